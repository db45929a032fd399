"""Autostart: the extension starts the sidecar with Node when nothing answers at the URL, and stops it."""

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from conftest import REPO, SHIM, import_from_extension, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def copied_extension(extensions_dir, models_dir):
    """The extension installed with --copy, with the location file install-extension writes."""
    target = extensions_dir / "latent-bridge"
    target.unlink()
    shutil.copytree(SHIM, target, ignore=shutil.ignore_patterns("__pycache__", "sidecar.json"))
    location = {"sidecar": str(REPO / "bin" / "latent-bridge.js"), "node": shutil.which("node"), "serve_args": ["--models", str(models_dir), "--offline"]}
    (target / "sidecar.json").write_text(json.dumps(location))
    return target


def test_starts_the_sidecar_uses_it_and_stops_it(webui, copied_extension, warnings_log):
    port = free_port()
    webui.start("--latent-bridge-url", f"ws://127.0.0.1:{port}/ws")
    autostart = webui.module("autostart")
    assert webui.module("location").EXTENSION_DIR == copied_extension.resolve()
    assert wait_for(lambda: autostart._process is not None, timeout=5)
    assert autostart.ensure_running(wait=30)
    process = autostart._process
    assert process.running()

    p, processed = webui.txt2img("sd15", width=64, height=64, steps=2, enable_hr=True, hr_scale=2.0, hr_upscaler="Latent (latent-bridge)", denoising_strength=0.5)
    assert processed.extra_generation_params["Latent bridge"] == "NN upscale x2"

    # Running already: nothing new is started.
    assert autostart.ensure_running(wait=5) and autostart._process is process
    autostart.stop()
    assert not process.running()
    assert not autostart._healthy("127.0.0.1", port, None)
    assert warnings_log() == []


def test_only_on_this_machine_and_only_when_enabled(webui, warnings_log):
    webui.start("--latent-bridge-url", "ws://192.0.2.1:7877/ws", "--latent-bridge-autostart", "off")
    autostart = webui.module("autostart")
    assert autostart._process is None
    assert not autostart.ensure_running(wait=1)
    assert autostart._process is None
    assert len(warnings_log()) == 1 and "only starts a sidecar on this machine" in warnings_log()[0]


def test_stopped_while_starting_is_no_failure(webui, extensions_dir, tmp_path, warnings_log):
    """The webui exits (or the extension unloads) while the sidecar is still starting: the wait
    ends at once and nobody is told that the sidecar "exited right after starting"."""
    never_listens = tmp_path / "never-listens.js"
    never_listens.write_text("setInterval(() => {}, 1000);\n")
    target = extensions_dir / "latent-bridge"
    target.unlink()
    shutil.copytree(SHIM, target, ignore=shutil.ignore_patterns("__pycache__", "sidecar.json"))
    (target / "sidecar.json").write_text(json.dumps({"sidecar": str(never_listens), "node": shutil.which("node")}))
    webui.start("--latent-bridge-url", f"ws://127.0.0.1:{free_port()}/ws", "--latent-bridge-autostart", "off")
    autostart = webui.module("autostart")
    outcome = []
    waiting = threading.Thread(target=lambda: outcome.append(autostart.ensure_running(wait=30)))
    waiting.start()
    assert wait_for(lambda: autostart._process is not None, timeout=5)
    process = autostart._process
    assert wait_for(lambda: process.running(), timeout=5)
    autostart.stop()
    waiting.join(timeout=5)
    assert not waiting.is_alive() and outcome == [False]
    assert not process.running()
    assert warnings_log() == []


def test_nothing_starts_after_stop(webui, copied_extension, warnings_log):
    """stop() runs when the webui exits; a start still on its way then leaves no sidecar behind."""
    webui.start("--latent-bridge-url", f"ws://127.0.0.1:{free_port()}/ws", "--latent-bridge-autostart", "off")
    autostart = webui.module("autostart")
    autostart.stop()
    assert autostart.ensure_running(wait=1) is False
    assert autostart._process is None
    assert warnings_log() == []


def test_the_token_goes_through_the_environment_not_the_command_line(webui, copied_extension, warnings_log):
    """Every local user can read /proc/PID/cmdline; only the owner can read /proc/PID/environ."""
    port = free_port()
    webui.start("--latent-bridge-url", f"ws://127.0.0.1:{port}/ws", "--latent-bridge-token", "s3cret-t0ken", "--latent-bridge-autostart", "off")
    autostart = webui.module("autostart")
    assert autostart.ensure_running(wait=30)
    pid = autostart._process.popen.pid
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not any(b"s3cret-t0ken" in part for part in command_line), command_line
    # Should the webui die without its exit handlers, the sidecar stops too (test/serve-lifecycle.test.ts).
    assert b"--exit-with-parent" in command_line
    assert b"LATENT_BRIDGE_TOKEN=s3cret-t0ken" in environment
    # The sidecar took the token: without it, it refuses.
    assert autostart._healthy("127.0.0.1", port, "s3cret-t0ken")
    assert not autostart._healthy("127.0.0.1", port, None)
    autostart.stop()
    assert warnings_log() == []


def test_only_local_urls():
    autostart = import_from_extension("latent_bridge_shim.autostart")
    assert autostart._local_endpoint("ws://localhost:7001/ws") == ("localhost", 7001)
    assert autostart._local_endpoint("wss://127.0.0.1:7001/ws") is None
    assert autostart._local_endpoint("ws://example.com:7001/ws") is None
