"""latent-bridge: neural latent upscaling and cross-family conversion in hires fix, live previews
every step, served by the latent-bridge sidecar (Node.js). The work is in latent_bridge_shim/,
importable while the webui imports this file (it puts the extension folder on sys.path).
"""

import os

from latent_bridge_shim import extension

extension.load(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
