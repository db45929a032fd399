"""Stand-in for the webui's launch.py (re-exports of modules/launch_utils.py, §1).

install.py runs in a subprocess with PYTHONPATH=<webui root> and imports this. Installed
packages are taken from LAUNCH_INSTALLED (comma separated); run_pip only records its calls
in the file LAUNCH_PIP_LOG, so a test can see what would have been installed.
"""

import os


def is_installed(package):
    return package in os.environ.get("LAUNCH_INSTALLED", "").split(",")


def run_pip(command, desc=None, live=False):
    with open(os.environ["LAUNCH_PIP_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{command}\t{desc}\n")
