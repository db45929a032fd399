"""The webui runs this at every start when the repository itself is the extension (Extensions ->
Install from URL). The extension is python-shim/; this hands over to it, with this folder as the
sidecar's: its npm packages are set up here on the first start (see
python-shim/latent_bridge_shim/installer.py). Nothing here may stop the webui.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "python-shim"))

from latent_bridge_shim import installer  # noqa: E402

installer.main(sidecar_dir=ROOT)
