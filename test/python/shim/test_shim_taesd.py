"""TAESD live previews: "Latent bridge (TAESD)" as the webui's preview method, fed by pictures the
sidecar decodes beside the sampler and pushes back, newest step wins."""

import io
import shutil

import numpy as np
import torch
from PIL import Image

from conftest import CONFORMANCE, MODEL_FILES, Sidecar, Viewer, wait_for
from modules import script_callbacks, shared

METHOD = "Latent bridge (TAESD)"


def start(webui, url):
    webui.start("--latent-bridge-url", url, "--latent-bridge-autostart", "off")
    shared.opts.data["show_progress_type"] = METHOD


def kept(webui):
    """{job: (step, items)} as the extension keeps the pictures it was sent."""
    taesd = webui.module("taesd")
    with taesd._lock:
        return dict(taesd._pictures)


def jpeg_pixels(data):
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("RGB"))


def test_taesd_as_the_webui_preview_method(webui, sidecar, warnings_log):
    start(webui, sidecar.url)
    previews = webui.module("previews")
    client = webui.module("sidecar").client()
    viewer = Viewer(sidecar.url)
    seen = {}

    def progress_request_at_the_last_step(params):
        # The last model evaluation of 4 steps: the state still says step 2 (it counts after each step).
        if params.sampling_step != params.total_sampling_steps - 2 or "grid" in seen:
            return
        job = previews._job_name(shared.state)
        # Three steps were sent; once the picture of the third is kept, no other can arrive (the
        # sampler waits here), so the one the progress request gets is known.
        assert wait_for(lambda: kept(webui).get(job, (None,))[0] == 3, timeout=60)
        # What the progress API does from its HTTP thread, while the job runs.
        asked = []
        original = client.request
        client.request = lambda *args, **kwargs: asked.append(args) or original(*args, **kwargs)
        try:
            shared.state.do_set_current_image()
        finally:
            client.request = original
        seen.update(grid=shared.state.current_image, step=kept(webui)[job][0], asked=asked)

    script_callbacks.on_cfg_denoiser(progress_request_at_the_last_step)
    try:
        webui.txt2img("sd15", width=64, height=48, steps=4, batch_size=2)
        assert wait_for(lambda: any(e.get("event") == "taesd" and e["step"] == seen["step"] for e in viewer.events), timeout=30)
    finally:
        viewer.close()
    grid = seen["grid"]
    assert seen["asked"] == []  # the pictures were at hand: the progress request waited on nothing
    assert len(grid) == 2 and tuple(grid[0].shape) == (48, 64, 3) and grid[0].dtype == torch.uint8
    # Exactly the JPEG the sidecar sent (its grid of both items), cut back into its items.
    pushed = next(e for e in viewer.events if e.get("event") == "taesd" and e["step"] == seen["step"])
    pixels = jpeg_pixels(pushed["image"]["data"])
    assert pixels.shape == (48, 128, 3)
    assert np.array_equal(grid[0].numpy(), pixels[:, :64]) and np.array_equal(grid[1].numpy(), pixels[:, 64:])
    assert not np.array_equal(grid[0].numpy(), grid[1].numpy())
    assert warnings_log() == []


def test_before_the_first_picture_the_linear_preview_stands_in(webui, sidecar):
    start(webui, sidecar.url)
    webui.txt2img("sd15", width=64, height=64, steps=1)
    webui.module("taesd").forget()
    shared.state.do_set_current_image()
    # The linear approximation: one pixel per latent pixel.
    assert tuple(shared.state.current_image[0].shape) == (8, 8, 3)


def test_without_the_decoder_one_warning_names_the_file_and_the_command(webui, tmp_path, warnings_log):
    models = tmp_path / "models"
    models.mkdir()
    for source, names in MODEL_FILES.items():
        for name in names:
            if name != "taesd_decoder.safetensors":
                shutil.copyfile(CONFORMANCE / source, models / name)
    sidecar = Sidecar(models)
    try:
        start(webui, sidecar.url)
        webui.txt2img("sd15", width=64, height=64, steps=3)
        assert wait_for(lambda: warnings_log(), timeout=30)
        webui.txt2img("sd15", width=64, height=64, steps=3)
        shared.state.do_set_current_image()
    finally:
        sidecar.stop()
    messages = warnings_log()
    assert len(messages) == 1, messages
    assert "TAESD previews are not available" in messages[0]
    assert "taesd_decoder.safetensors" in messages[0] and "latent-bridge models pull taesd-decoder-v1" in messages[0]
    # The live preview went on, linear.
    assert tuple(shared.state.current_image[0].shape) == (8, 8, 3)


def test_no_taesd_asked_for_with_the_other_methods(webui, sidecar):
    webui.start("--latent-bridge-url", sidecar.url, "--latent-bridge-autostart", "off")
    shared.opts.data["show_progress_type"] = "Latent bridge"
    webui.txt2img("sd15", width=64, height=64, steps=2)
    client = webui.module("sidecar").client()
    assert wait_for(lambda: client.request("models", {}, 5))
    assert kept(webui) == {}
    assert torch.is_tensor(shared.state.current_latent)
