"""Stand-in for the webui's launch.py: re-exports of modules/launch_utils.py (§1).

install.py runs in a subprocess with PYTHONPATH=<webui root> and imports this.
"""

from modules import launch_utils

python = launch_utils.python
run = launch_utils.run
is_installed = launch_utils.is_installed
run_pip = launch_utils.run_pip
list_extensions = launch_utils.list_extensions
run_extension_installer = launch_utils.run_extension_installer
