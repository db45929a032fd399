"""Where this machine's Node.js and sidecar are: `sidecar.json` beside this package, then PATH.

`latent-bridge install-extension` writes the file (node, sidecar, serve_args); the extension's
install.py records the Node it found there, so that autostart uses the same one even when the
webui runs with another PATH. A recorded Node that no longer runs, or is too old, is passed
over for the one on PATH. Only the standard library: install.py imports this outside the webui.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

EXTENSION_DIR = Path(__file__).resolve().parent.parent
LOCATION_FILE = EXTENSION_DIR / "sidecar.json"
# The sidecar's package.json says "engines": {"node": ">=20"}.
NODE_MAJOR = 20
# `node --version` answers in well under a second; a hung binary must not hold up the webui.
_VERSION_TIMEOUT = 10
_VERSION = re.compile(r"v(\d+)\.\d+\.\d+")


class Node(NamedTuple):
    path: str
    version: str  # as `node --version` prints it, e.g. "v20.20.2"

    @property
    def major(self):
        return int(_VERSION.match(self.version).group(1))


class NodeSearch(NamedTuple):
    usable: "Node | None"  # the first Node >= NODE_MAJOR: the recorded one, else PATH's
    too_old: "list[Node]"  # those that run but are older


def read():
    """The location file's fields ({} when it is missing or unreadable)."""
    try:
        data = json.loads(LOCATION_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(**fields):
    """Sets the given fields in the location file, keeping the others (serve_args a user added)."""
    data = {**read(), **fields}
    temporary = LOCATION_FILE.with_name(LOCATION_FILE.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, LOCATION_FILE)


def sidecar_entry():
    """The sidecar's `bin/latent-bridge.js`: recorded by install-extension, else the checkout this
    package sits in (cloned from the Extensions tab, or linked from one); None when neither."""
    entry = read().get("sidecar")
    if not entry:
        # A checkout, or linked from one: python-shim/ sits next to bin/.
        entry = str(EXTENSION_DIR.parent / "bin" / "latent-bridge.js")
    return Path(entry) if Path(entry).is_file() else None


def sidecar_models_dir():
    """The sidecar package's own `models/` folder, which it always searches; None without a sidecar."""
    entry = sidecar_entry()
    return None if entry is None else entry.parent.parent / "models"


def find_node():
    """Looks at the recorded Node, then at `node` on PATH."""
    too_old = []
    seen = set()
    for candidate in (read().get("node"), shutil.which("node")):
        if not isinstance(candidate, str) or not candidate or not Path(candidate).is_file():
            continue
        key = os.path.realpath(candidate)
        if key in seen:
            continue
        seen.add(key)
        node = _run_version(candidate)
        if node is None:
            continue
        if node.major >= NODE_MAJOR:
            return NodeSearch(node, too_old)
        too_old.append(node)
    return NodeSearch(None, too_old)


def _run_version(path):
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_VERSION_TIMEOUT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Node(path, version) if _VERSION.match(version) else None
