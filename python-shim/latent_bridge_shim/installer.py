"""What the extension's install.py does, which the webui's launcher runs at every start (and once
right after Extensions -> Install from URL), as a subprocess with the webui's Python.

- Installs the Python packages the extension needs into the webui's environment.
- Looks for Node.js 20+ (the recorded one, else PATH), records it for autostart, and says
  exactly what to install when there is none.
- When the repository itself is the extension (installed from the Extensions tab), sets up the
  sidecar in it: `npm ci --omit=dev` on the first start, and again only when package-lock.json
  changed (its hash is stamped into node_modules/ after a successful install).

Nothing here may stop the webui: every failure is one message on the console, and the webui
starts without the sidecar (hires fix and previews then work the webui's own way). The launcher
shows this output once install.py has finished. Only the standard library and the webui's
`launch` module.
"""

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from . import location

# Distribution name -> what the extension needs it for.
REQUIREMENTS = {
    "msgpack": "msgpack framing of sidecar messages",
    "websocket-client": "the WebSocket connection to the sidecar",
}
NPM_COMMAND = ("ci", "--omit=dev", "--no-audit", "--no-fund")
# A slow connection takes a few minutes; a hung npm must not hold up the webui for ever.
NPM_TIMEOUT = 15 * 60
# Written into node_modules/, so it goes when node_modules goes (and `npm ci` removes it).
STAMP_NAME = ".latent-bridge-setup"
INSTALL_NODE = "Install the LTS version from https://nodejs.org (it includes npm) and restart the webui"
WITHOUT_SIDECAR = "until then hires fix and live previews work the webui's own way"


def main(sidecar_dir=None):
    """Everything install.py does; `sidecar_dir` is the repository root when it is the extension."""
    _step("installing its Python packages", install_requirements)
    node = _step("looking for Node.js", check_node)
    if node is not None and sidecar_dir is not None:
        _step("setting up the sidecar", setup_sidecar, Path(sidecar_dir), node)


def install_requirements():
    import launch  # the webui's, found through PYTHONPATH=<webui root>

    for package, purpose in REQUIREMENTS.items():
        if not launch.is_installed(package):
            launch.run_pip(f"install {package}", f"latent-bridge requirement: {package} ({purpose})")


def check_node():
    """The Node.js to use, recorded for autostart; None (and what to install said) when there is none."""
    search = location.find_node()
    if search.usable is None:
        if search.too_old:
            old = search.too_old[0]
            print(f"latent-bridge: the sidecar needs Node.js {location.NODE_MAJOR} or newer, and {old.path} is {old.version}. {INSTALL_NODE}; {WITHOUT_SIDECAR}.")
        else:
            print(f"latent-bridge: the sidecar needs Node.js {location.NODE_MAJOR} or newer, which was not found (no `node` on PATH). {INSTALL_NODE}; {WITHOUT_SIDECAR}.")
        return None
    if location.read().get("node") != search.usable.path:
        location.record(node=search.usable.path)
    return search.usable


def setup_sidecar(root, node):
    """Installs the sidecar's npm packages in `root` unless the stamp says they match the lock file."""
    lock = (root / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    stamp = root / "node_modules" / STAMP_NAME
    stamped = _read_stamp(stamp)
    if stamped == digest:
        return
    # No stamp but packages: someone ran npm here (`npm ci`, or the README's quick start).
    if stamped is None and _installed_match(root, lock):
        stamp.write_text(digest, encoding="ascii")
        return
    npm = _npm_beside(node)
    if npm is None:
        print(f"latent-bridge: npm was not found next to {node.path} or on PATH, so the sidecar cannot be set up. {INSTALL_NODE}; {WITHOUT_SIDECAR}.")
        return
    command = " ".join(["npm", *NPM_COMMAND])
    print(f"latent-bridge: setting up the sidecar in {root} ({command}, a minute or two)", flush=True)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [npm, *NPM_COMMAND], cwd=str(root), env=_npm_environment(node), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        print(f"latent-bridge: `{command}` in {root} did not finish within {NPM_TIMEOUT // 60} minutes and was stopped; run it there yourself to see why. The webui starts without the sidecar and tries again at its next start.")
        return
    if result.returncode != 0:
        print(f"latent-bridge: `{command}` in {root} failed (exit code {result.returncode}: {_npm_reason(result.stderr + result.stdout)}). Run it there yourself to see the whole output; the webui starts without the sidecar and tries again at its next start.")
        return
    stamp.write_text(digest, encoding="ascii")
    print(f"latent-bridge: the sidecar is set up ({node.path} {node.version}, {time.monotonic() - started:.0f} s)")


def _step(what, function, *args):
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001  (whatever it is, the webui must start)
        print(f"latent-bridge: {what} failed ({_last_line(str(error)) or type(error).__name__}); the webui starts anyway, and this is tried again at its next start.")
        return None


def _read_stamp(stamp):
    try:
        return stamp.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None


def _installed_match(root, lock):
    """True when npm's record of what it installed (node_modules/.package-lock.json) has every
    package the sidecar needs at run time, at the locked version."""
    try:
        installed = json.loads((root / "node_modules" / ".package-lock.json").read_text(encoding="utf-8"))["packages"]
        wanted = json.loads(lock)["packages"]
        for where, entry in wanted.items():
            if not where or entry.get("dev") or entry.get("optional") or entry.get("devOptional"):
                continue
            if installed.get(where, {}).get("version") != entry.get("version"):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _npm_beside(node):
    """The npm that came with this Node (Windows: npm.cmd), else the one on PATH."""
    folder = Path(node.path).parent
    for name in ("npm.cmd", "npm") if os.name == "nt" else ("npm",):
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which("npm")


def _npm_environment(node):
    environment = dict(os.environ)
    # npm runs on whatever `node` PATH finds first: make that the Node we checked.
    environment["PATH"] = os.pathsep.join([str(Path(node.path).parent), environment.get("PATH", "")])
    # The project's .npmrc already keeps dependency scripts from running; should a user's
    # configuration turn them back on, onnxruntime-node still must not fetch CUDA (hundreds of MB).
    environment["ONNXRUNTIME_NODE_INSTALL"] = "skip"
    return environment


def _npm_reason(output):
    """npm's own words for what went wrong: its first `npm error` line that is not the error
    code or the pointer to its log."""
    for line in output.splitlines():
        reason = line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if reason != line.strip() and reason and not reason.startswith(("code ", "A complete log", "errno ")):
            return reason
    return _last_line(output)


def _last_line(text):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""
