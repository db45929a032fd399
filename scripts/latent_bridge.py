"""latent-bridge, when the repository itself is the extension (Extensions -> Install from URL).

The extension is python-shim/: this imports its package and loads it, nothing else.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHIM = os.path.join(_ROOT, "python-shim")

sys.path.insert(0, _SHIM)
try:
    from latent_bridge_shim import extension
finally:
    sys.path.remove(_SHIM)

extension.load(_ROOT)
