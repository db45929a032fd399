"""Whatever the sidecar does, the image is finished the webui's own way, with one warning."""

import shutil
import socket

import numpy as np
import torch

from conftest import CONFORMANCE, Sidecar, wait_for
from misbehaving_sidecar import MisbehavingSidecar
from modules import script_callbacks, shared

OUR_MODE = "Latent (latent-bridge)"
HIRES = dict(width=128, height=96, steps=4, enable_hr=True, hr_scale=2.0, denoising_strength=0.5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(webui, url):
    webui.start("--latent-bridge-url", url, "--latent-bridge-autostart", "off")
    # Reconnect attempts spaced for a test, not for a user.
    webui.module("client").RETRY_MAX_DELAY = 0.2


def webuis_own(webui, checkpoint, **kwargs):
    """What the webui alone does: the same generation with the extension unloaded, its hires input."""
    script_callbacks.script_unloaded_callback()
    shared.latent_upscale_modes[OUR_MODE] = {"mode": "bilinear", "antialias": False}
    p, _ = webui.txt2img(checkpoint, **kwargs)
    return p.hr_input_latents


def test_sidecar_not_running(webui, warnings_log):
    start(webui, f"ws://127.0.0.1:{free_port()}/ws")
    shared.opts.data["show_progress_type"] = "Latent bridge"
    p, processed = webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
    shared.state.do_set_current_image()  # the live preview falls back to Approx cheap
    assert len(shared.state.current_image) == 1
    p2, processed2 = webui.txt2img("sd15", hr_upscaler=OUR_MODE, **HIRES)
    assert processed.latents.shape == (1, 4, 24, 32) and processed2.latents.shape == (1, 4, 24, 32)
    assert processed.extra_generation_params["Latent bridge"] == "not applied (sidecar unavailable)"
    messages = warnings_log()
    assert len(messages) == 1, messages
    assert "cannot reach the sidecar" in messages[0] and "webui's own latent resize" in messages[0]
    assert torch.equal(p.hr_input_latents, webuis_own(webui, "sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES))


def test_sidecar_killed_mid_job_then_back(webui, own_sidecar, warnings_log):
    sidecar = own_sidecar()
    start(webui, sidecar.url)

    def kill_at_step_two(params):
        if not params.denoiser.p.is_hr_pass and params.sampling_step == 2 and sidecar.process.poll() is None:
            sidecar.kill()

    script_callbacks.on_cfg_denoiser(kill_at_step_two)
    p, processed = webui.txt2img("sd15", hr_upscaler=OUR_MODE, **HIRES)
    assert processed.latents.shape == (1, 4, 24, 32)
    assert processed.extra_generation_params["Latent bridge"] == "not applied (sidecar unavailable)"
    assert len(warnings_log()) == 1

    # The sidecar comes back on the same port: the client reconnects by itself.
    back = own_sidecar(sidecar.port)
    client = webui.module("sidecar").client()
    assert wait_for(lambda: _reachable(client), timeout=10)
    p, processed = webui.txt2img("sd15", hr_upscaler=OUR_MODE, **HIRES)
    assert processed.extra_generation_params["Latent bridge"] == "NN upscale x2"
    assert len(warnings_log()) == 1
    back.stop()


def _reachable(client):
    try:
        client.request("models", {}, 5)
        return True
    except Exception:
        return False


def test_sidecar_answering_a_wrong_shape(webui, warnings_log):
    def wrong_shape(message):
        if message.get("noreply"):
            return None
        data = np.zeros((1, 4, 5, 5), dtype="<f4").tobytes()
        return {"id": message["id"], "ok": True, "latent": {"dtype": "float32", "shape": [1, 4, 5, 5], "data": data}, "plan": {"steps": [], "warnings": []}}

    server = MisbehavingSidecar(wrong_shape)
    try:
        start(webui, server.url)
        p, processed = webui.txt2img("sd15", hr_upscaler=OUR_MODE, **HIRES)
        p2, _ = webui.txt2img("sd15", hr_upscaler=OUR_MODE, **HIRES)
    finally:
        server.close()
    assert any(r.get("op") == "hires" for r in server.requests)
    assert processed.latents.shape == (1, 4, 24, 32)
    assert processed.extra_generation_params["Latent bridge"] == "not applied (bad reply)"
    messages = warnings_log()
    assert len(messages) == 1 and "shape [1, 4, 5, 5] where [1, 4, 24, 32] was asked for" in messages[0]
    assert torch.equal(p.hr_input_latents, webuis_own(webui, "sd15", hr_upscaler=OUR_MODE, **HIRES))


def test_sidecar_too_slow(webui, sidecar, warnings_log):
    start(webui, sidecar.url)
    shared.opts.data["latent_bridge_timeout"] = 0.002
    p, processed = webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
    p2, processed2 = webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
    assert processed.extra_generation_params["Latent bridge"] == "not applied (sidecar too slow)"
    messages = warnings_log()
    assert len(messages) == 1 and "did not answer hires within 0.002 s" in messages[0]
    # The late replies are dropped; with time to answer, the same connection works again.
    shared.opts.data["latent_bridge_timeout"] = 60
    p3, processed3 = webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
    assert processed3.extra_generation_params["Latent bridge"] == "xl->v1 interposed, NN upscale x2"

    expected = webuis_own(webui, "sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
    assert torch.equal(p.hr_input_latents, expected)


def test_sidecar_answering_an_error(webui, sidecar, warnings_log):
    """No v1->xl interposer in the models folder, offline: the sidecar says so; the webui goes on."""
    start(webui, sidecar.url)
    p, processed = webui.txt2img("sd15", hr_upscaler="Latent", hr_checkpoint_name="sdxl", **HIRES)
    assert processed.extra_generation_params["Latent bridge"] == "not applied (model_unavailable)"
    messages = warnings_log()
    assert len(messages) == 1 and "v1->xl interpose" in messages[0] and "v1-to-xl_interposer-v4.0.safetensors" in messages[0]


def test_missing_networks_are_named_together_and_a_new_cause_warns_again(webui, tmp_path, warnings_log):
    """A first run without the networks: one warning names every file the job needs and the one
    command that fetches them all; a job missing something else is told so too."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(CONFORMANCE / "upscaler-x2.0.weights.safetensors", models / "latent-upscaler-v2.1_SDv1-x2.0.safetensors")
    sidecar = Sidecar(models)
    try:
        start(webui, sidecar.url)
        first = dict(HIRES, hr_scale=1.5)
        p, processed = webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **first)
        webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **first)
        assert processed.extra_generation_params["Latent bridge"] == "not applied (model_unavailable)"
        messages = warnings_log()
        assert len(messages) == 1, messages
        assert "xl-to-v1_interposer-v4.0.safetensors" in messages[0] and "latent-upscaler-v2.1_SDv1-x1.5.safetensors" in messages[0]
        assert "latent-bridge models pull interposer-xl-to-v1 upscaler-v1-x1.5" in messages[0]
        webui.txt2img("sdxl", hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15", **HIRES)
        messages = warnings_log()
        assert len(messages) == 2, messages
        assert "xl-to-v1_interposer-v4.0.safetensors" in messages[1] and "SDv1-x1.5" not in messages[1]
    finally:
        sidecar.stop()
