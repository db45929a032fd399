"""latent-bridge's webui extension: the Python side that talks to the Node sidecar.

The package has a name of its own because the webui imports every extension's helpers
from one shared ``sys.path``; a generic name such as ``lib`` would collide.
"""

VERSION = "0.1.0"
