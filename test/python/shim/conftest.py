"""Fixtures for the webui extension tests: the stand-in webui with the real extension loaded,
and the real sidecar process with networks built from the conformance weights."""

import importlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHIM = REPO / "python-shim"
STANDIN = HERE / "standin_webui"
CONFORMANCE = REPO / "test" / "conformance"

# The stand-in webui is what `import modules` finds, as in the webui's own process.
sys.path.insert(0, str(STANDIN))
sys.path.insert(0, str(HERE))
# Shared test helpers (reference networks, safetensors files) live one folder up.
sys.path.insert(0, str(HERE.parent))

import checkpoints  # noqa: E402
from modules import errors, images, patches, processing, script_callbacks, sd_models, sd_samplers_common, shared, shared_options, shared_state  # noqa: E402

import webui as standin  # noqa: E402

# Conformance weights placed under the file names the sidecar's registry looks for.
MODEL_FILES = {
    "interposer-xl-to-v1.weights.safetensors": ["xl-to-v1_interposer-v4.0.safetensors"],
    "interposer-v1-to-v3-small.weights.safetensors": ["v1-to-v3_interposer-v4.0.safetensors"],
    "interposer-fx-to-xl-small.weights.safetensors": ["fx-to-xl_interposer-v4.0.safetensors"],
    "upscaler-x2.0.weights.safetensors": ["latent-upscaler-v2.1_SDv1-x2.0.safetensors", "latent-upscaler-v2.1_SDxl-x2.0.safetensors"],
    "upscaler-x1.5.weights.safetensors": ["latent-upscaler-v2.1_SDv1-x1.5.safetensors", "latent-upscaler-v2.1_SDxl-x1.5.safetensors"],
    "upscaler-x1.25-small.weights.safetensors": ["latent-upscaler-v2.1_SDv1-x1.25.safetensors", "latent-upscaler-v2.1_SDxl-x1.25.safetensors"],
    "taesd/taesd-decoder-4ch.weights.safetensors": ["taesd_decoder.safetensors", "taesdxl_decoder.safetensors"],
    "taesd/taesd-decoder-16ch.weights.safetensors": ["taesd3_decoder.safetensors", "taef1_decoder.safetensors"],
}

CHECKPOINTS = {"sd15": checkpoints.sd15, "sd2": checkpoints.sd2, "sdxl": checkpoints.sdxl, "ssd": checkpoints.ssd, "sd3": checkpoints.sd3}

_ORIGINAL_MODES = dict(shared.latent_upscale_modes)
_ORIGINAL_INDEXES = dict(sd_samplers_common.approximation_indexes)


# ---- the sidecar -------------------------------------------------------------------------------


class Sidecar:
    """`node bin/latent-bridge.js serve` on a free port (or a given one, to come back after a kill)."""

    def __init__(self, models_dir, port=0):
        self.models_dir = models_dir
        self.output = []
        command = ["node", str(REPO / "bin" / "latent-bridge.js"), "serve", "--host", "127.0.0.1", "--port", str(port), "--models", str(models_dir), "--offline"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATENT_BRIDGE_")}
        self.process = subprocess.Popen(command, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.process.stdout.readline().strip()
        if not first.startswith("listening on http://"):
            self.process.kill()
            raise RuntimeError(f"the sidecar did not start: {first}{self.process.stdout.read()}")
        self.http_url = first[len("listening on "):]
        self.port = int(self.http_url.rsplit(":", 1)[1])
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        # Keep reading its output so the pipe never fills up.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.output.append(line)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    for source, names in MODEL_FILES.items():
        for name in names:
            shutil.copyfile(CONFORMANCE / source, folder / name)
    return folder


@pytest.fixture(scope="session")
def sidecar(models_dir):
    """One sidecar for the tests that leave it alone."""
    process = Sidecar(models_dir)
    yield process
    process.stop()


@pytest.fixture
def own_sidecar(models_dir):
    """A sidecar of the test's own, for tests that kill it."""
    processes = []

    def start(port=0):
        processes.append(Sidecar(models_dir, port))
        return processes[-1]

    yield start
    for process in processes:
        process.stop()


# ---- the stand-in webui ------------------------------------------------------------------------


def _reset_standin():
    """A fresh webui process, as far as the extension can tell (the `modules` objects stay)."""
    for key_patches in patches.originals.values():
        for (obj, field), original in key_patches.items():
            setattr(obj, field, original)
    patches.originals.clear()
    script_callbacks.clear_callbacks()
    errors.reported.clear()
    images.saved.clear()
    importlib.reload(shared_options)
    shared.opts.data_labels.clear()
    shared.opts.data_labels.update(shared_options.options_templates)
    shared.opts.data.clear()
    shared.opts.data.update({k: v.default for k, v in shared_options.options_templates.items()})
    shared.latent_upscale_modes.clear()
    shared.latent_upscale_modes.update(_ORIGINAL_MODES)
    sd_samplers_common.approximation_indexes.clear()
    sd_samplers_common.approximation_indexes.update(_ORIGINAL_INDEXES)
    shared.state = shared_state.State()
    shared.sd_model = None
    shared.parallel_processing_allowed = True
    sd_models.checkpoints_list.clear()
    for name, build in CHECKPOINTS.items():
        sd_models.checkpoints_list[name] = sd_models.CheckpointInfo(name, build)
    # The extension's package is imported anew, as in a new webui process.
    for name in [n for n in sys.modules if n == "latent_bridge_shim" or n.startswith("latent_bridge_shim.")]:
        del sys.modules[name]


class WebUI:
    def __init__(self, extensions_dir):
        self.extensions_dir = extensions_dir

    def start(self, *argv, settings_tab=True):
        standin.initialize(str(self.extensions_dir), argv)
        if settings_tab:
            standin.build_settings_ui()
        assert errors.reported == [], errors.reported

    def reload(self):
        standin.reload_ui(str(self.extensions_dir))
        assert errors.reported == [], errors.reported

    @property
    def shim(self):
        return importlib.import_module("latent_bridge_shim")

    def module(self, name):
        return importlib.import_module(f"latent_bridge_shim.{name}")

    def load(self, checkpoint):
        shared.opts.data["sd_model_checkpoint"] = checkpoint
        sd_models.reload_model_weights()

    def txt2img(self, checkpoint="sd15", **kwargs):
        shared.opts.data["sd_model_checkpoint"] = checkpoint
        p = processing.StableDiffusionProcessingTxt2Img(**kwargs)
        return p, processing.process_images(p)

    def shutdown(self):
        script_callbacks.script_unloaded_callback()
        if "latent_bridge_shim.autostart" in sys.modules:
            sys.modules["latent_bridge_shim.autostart"].stop()


@pytest.fixture
def extensions_dir(tmp_path):
    """WEBUI/extensions with the extension linked in, as `latent-bridge install-extension` does."""
    folder = tmp_path / "extensions"
    folder.mkdir()
    (folder / "latent-bridge").symlink_to(SHIM, target_is_directory=True)
    return folder


@pytest.fixture
def webui(extensions_dir):
    _reset_standin()
    ui = WebUI(extensions_dir)
    yield ui
    ui.shutdown()


@pytest.fixture
def warnings_log(caplog):
    """The extension's warnings, as the user would see them in the console."""
    caplog.set_level("INFO", logger="latent_bridge")

    def warnings():
        return [r.getMessage() for r in caplog.records if r.name == "latent_bridge" and r.levelname == "WARNING"]

    return warnings


def import_from_extension(name):
    """Imports a module of the extension's package the way its script does: with the extension on sys.path."""
    saved = sys.path
    sys.path = [str(SHIM)] + sys.path
    try:
        return importlib.import_module(name)
    finally:
        sys.path = saved


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Viewer:
    """A viewer client of the sidecar (the `watch` op of docs/protocol.md), collecting its pushes."""

    def __init__(self, url):
        import msgpack
        import websocket

        self._msgpack = msgpack
        self.ws = websocket.create_connection(url, timeout=10)
        self.ws.send_binary(msgpack.packb({"id": 1, "op": "watch"}, use_bin_type=True))
        reply = msgpack.unpackb(self.ws.recv(), raw=False)
        assert reply.get("ok"), reply
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                frame = self.ws.recv()
            except Exception:
                return
            if not isinstance(frame, bytes) or not frame:  # closed
                return
            self.events.append(self._msgpack.unpackb(frame, raw=False))

    def previews(self, job_prefix=""):
        return [e for e in list(self.events) if e.get("event") == "preview" and e["job"]["job"].startswith(job_prefix)]

    def close(self):
        self.ws.close()
