"""Run by the webui's launcher at every start (a subprocess with PYTHONPATH=<webui root>).

Installs the two Python packages the extension needs into the webui's environment and says
so if Node.js, which runs the sidecar, is missing. Nothing here may stop the webui.
"""

import shutil
import subprocess

import launch

# Distribution name -> what the shim needs it for.
REQUIREMENTS = {
    "msgpack": "msgpack framing of sidecar messages",
    "websocket-client": "the WebSocket connection to the sidecar",
}
NODE_MAJOR = 20


def install_requirements():
    for package, purpose in REQUIREMENTS.items():
        if not launch.is_installed(package):
            launch.run_pip(f"install {package}", f"latent-bridge requirement: {package} ({purpose})")


def check_node():
    node = shutil.which("node")
    if node is None:
        print(
            "latent-bridge: Node.js was not found on PATH. The sidecar that does the work needs "
            f"Node.js {NODE_MAJOR} or newer (https://nodejs.org); until then hires fix and live "
            "previews use the webui's own methods."
        )
        return
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    if major < NODE_MAJOR:
        print(f"latent-bridge: the sidecar needs Node.js {NODE_MAJOR} or newer, {node} is {version}.")


install_requirements()
check_node()
