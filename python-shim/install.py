"""Run by the webui's launcher at every start (a subprocess with PYTHONPATH=<webui root>).

Installs the Python packages the extension needs and checks for Node.js: see
latent_bridge_shim/installer.py (importable: Python puts this folder first on sys.path).
Nothing here may stop the webui.
"""

from latent_bridge_shim import installer

installer.main()
