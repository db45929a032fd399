"""Starting the sidecar with Node.js when the setting asks for it and nothing answers at the URL.

Node and the sidecar are found through `sidecar.json` (location.py); an extension that is a
checkout, or linked from one, also finds `bin/latent-bridge.js` next to python-shim/. The
sidecar is started on the host and port of the configured URL, only on this machine, and
stopped when the webui exits. It is never started twice: a process that this module started
and that still runs is waited for, not replaced.
"""

import atexit
import logging
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from . import location, notices, settings

logger = logging.getLogger("latent_bridge")

# The first start may compile networks; later ones take a second or two.
HEALTH_WAIT = 60.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The sidecar reads its token from this variable (`latent-bridge serve --help`).
TOKEN_VARIABLE = "LATENT_BRIDGE_TOKEN"

# Loopback requests must not go through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_lock = threading.Lock()
_process = None
_stop_registered = False
# Set by stop(): the webui is exiting, so a start still on its way must not leave a sidecar behind.
_closed = False


def start_in_background():
    """Checks for (and if needed starts) the sidecar without holding up the webui's startup."""
    if settings.get(settings.AUTOSTART):
        threading.Thread(target=ensure_running, name="latent-bridge autostart", daemon=True).start()


class _Started:
    """A sidecar process this module started; `stopped` is set when stop() ends it on purpose."""

    def __init__(self, popen):
        self.popen = popen
        self.stopped = threading.Event()

    def running(self):
        return self.popen.poll() is None


def ensure_running(wait=HEALTH_WAIT):
    """True once the sidecar at the configured URL answers /healthz, starting it if needed."""
    global _process, _stop_registered
    url = str(settings.get(settings.URL)).strip()
    token = str(settings.get(settings.TOKEN)).strip() or None
    endpoint = _local_endpoint(url)
    if endpoint is None:
        notices.warn_once("autostart", f"autostart only starts a sidecar on this machine (ws://127.0.0.1:PORT/ws), not at {url}")
        return False
    host, port = endpoint
    if _healthy(host, port, token):
        return True
    with _lock:
        if _closed:
            return False
        if _process is None or not _process.running():
            command = _command(host, port, token)
            if command is None:
                return False
            logger.info("latent-bridge: starting the sidecar: %s", " ".join(command))
            try:
                _process = _Started(subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=str(Path(command[1]).parent.parent), env=_environment(token)))
            except OSError as error:
                notices.warn_once("autostart", f"could not start the sidecar ({error}); start it yourself with `latent-bridge serve`")
                return False
            if not _stop_registered:
                atexit.register(stop)
                _stop_registered = True
        process = _process
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _healthy(host, port, token):
            logger.info("latent-bridge: the sidecar is up at %s", url)
            notices.clear("autostart")
            return True
        # A process stopped on purpose (the webui exits, the extension is unloaded) is no failure.
        if process.stopped.is_set():
            return False
        if not process.running():
            notices.warn_once("autostart", f"the sidecar exited with code {process.popen.returncode} right after starting; see its messages above")
            return False
        process.stopped.wait(0.2)
    if process.stopped.is_set():
        return False
    notices.warn_once("autostart", f"the sidecar did not answer http://{_netloc(host, port)}/healthz within {wait:g} s")
    return False


def stop():
    """Stops the sidecar this module started, if it still runs, and starts none after."""
    global _process, _closed
    with _lock:
        _closed = True
        process, _process = _process, None
    if process is None:
        return
    process.stopped.set()
    if not process.running():
        return
    process.popen.terminate()
    try:
        process.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        process.popen.wait()


def _command(host, port, token):
    recorded = location.read()
    entry = location.sidecar_entry()
    if entry is None:
        notices.warn_once(
            "autostart",
            "autostart does not know where the sidecar is: run `latent-bridge install-extension WEBUI_DIR` "
            "from the latent-bridge folder, or start `latent-bridge serve` yourself",
        )
        return None
    node = location.find_node().usable
    if node is None:
        notices.warn_once("autostart", f"Node.js {location.NODE_MAJOR} or newer was not found (https://nodejs.org); the sidecar cannot be started")
        return None
    # --exit-with-parent: should the webui die without running its exit handlers, the sidecar
    # stops too instead of holding the port for the next start.
    command = [node.path, str(entry), "serve", "--host", host, "--port", str(port), "--exit-with-parent"]
    return command + [str(arg) for arg in recorded.get("serve_args", [])]


def _environment(token):
    """The sidecar's environment: the token goes here, where only its owner can read it
    (/proc/PID/environ), never on the command line that every local user sees."""
    environment = dict(os.environ)
    environment.pop(TOKEN_VARIABLE, None)
    if token:
        environment[TOKEN_VARIABLE] = token
    return environment


def _local_endpoint(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in _LOOPBACK:
        return None
    try:
        return parts.hostname, parts.port or 80
    except ValueError:
        return None


def _netloc(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _healthy(host, port, token):
    request = urllib.request.Request(f"http://{_netloc(host, port)}/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener.open(request, timeout=1.0) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False
