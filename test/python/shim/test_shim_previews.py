"""Live previews: every step's x0 reaches the sidecar's viewer; "Latent bridge" as the webui's preview method."""

import threading

import numpy as np
import torch

from conftest import Viewer, wait_for
from modules import script_callbacks, sd_samplers_common, shared


def start(webui, url):
    webui.start("--latent-bridge-url", url, "--latent-bridge-autostart", "off")


def test_every_step_arrives_at_a_viewer(webui, sidecar, warnings_log):
    start(webui, sidecar.url)
    viewer = Viewer(sidecar.url)
    sent = []

    def pace(params):
        # A real step takes tens of milliseconds; here the test waits until the viewer has
        # the previous step, so that the sidecar never merges two steps into one push.
        if sent:
            assert wait_for(lambda: len(viewer.previews("txt2img")) >= len(sent), timeout=10)
        sent.append(params.sampling_step)

    script_callbacks.on_cfg_denoiser(pace)
    try:
        p, processed = webui.txt2img("sd15", width=64, height=48, steps=6, batch_size=2)
        assert wait_for(lambda: len(viewer.previews("txt2img")) == 6)
    finally:
        viewer.close()
    pushes = viewer.previews("txt2img")
    assert [e["job"]["step"] for e in pushes] == [1, 2, 3, 4, 5, 6]
    assert {e["job"]["total"] for e in pushes} == {6}
    assert {e["job"]["family"] for e in pushes} == {"v1"}
    assert pushes[-1]["job"]["state"] == "finished"
    assert pushes[0]["job"]["shape"] == [2, 4, 6, 8]
    assert pushes[0]["job"]["job"].startswith("txt2img ") and pushes[0]["job"]["job"].endswith(" #1")
    image = pushes[-1]["image"]
    assert image["width"] > 0 and len(image["data"]) == image["width"] * image["height"] * 3
    assert warnings_log() == []


def test_hires_pass_previews_are_a_job_of_their_own(webui, sidecar):
    start(webui, sidecar.url)
    viewer = Viewer(sidecar.url)
    try:
        webui.txt2img("sdxl", width=64, height=64, steps=3, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (latent-bridge)", hr_checkpoint_name="sd15", denoising_strength=0.7)
        assert wait_for(lambda: any(e["job"]["job"].endswith("#2") and e["job"]["state"] == "finished" for e in viewer.previews("txt2img")))
    finally:
        viewer.close()
    jobs = {e["job"]["job"]: e["job"] for e in viewer.previews("txt2img")}
    first = next(job for name, job in jobs.items() if name.endswith("#1"))
    second = next(job for name, job in jobs.items() if name.endswith("#2"))
    assert first["family"] == "xl" and first["shape"] == [1, 4, 8, 8]
    assert second["family"] == "v1" and second["shape"] == [1, 4, 12, 12]


def test_the_sampler_never_waits_for_the_network(webui, sidecar):
    """store_latent returns before the sidecar has even seen the step."""
    start(webui, sidecar.url)
    client = webui.module("sidecar").client()
    gate = threading.Event()
    sent = []
    original_send = client._send

    def held_send(ws, message, drop_on_error=True):
        if message.get("op") == "preview":
            gate.wait(10)
            sent.append(message["step"])
        return original_send(ws, message, drop_on_error)

    client._send = held_send
    try:
        p, processed = webui.txt2img("sd15", width=64, height=64, steps=5)
        assert sent == []  # the whole generation ran while the sender was held up
    finally:
        gate.set()
    assert wait_for(lambda: sent == [1, 2, 3, 4, 5])


def test_previews_can_be_switched_off(webui, sidecar):
    start(webui, sidecar.url)
    shared.opts.data["latent_bridge_previews"] = False
    viewer = Viewer(sidecar.url)
    try:
        webui.txt2img("sd15", width=64, height=64, steps=3)
        webui.txt2img("sd15", width=64, height=64, steps=1)
    finally:
        viewer.close()
    assert viewer.previews("txt2img") == []


def cheap_image(latent):
    return sd_samplers_common.single_sample_to_image(latent, sd_samplers_common.approximation_indexes["Approx cheap"])


def test_latent_bridge_as_the_webui_preview_method(webui, sidecar, warnings_log):
    start(webui, sidecar.url)
    shared.opts.data["latent_bridge_previews"] = False
    shared.opts.data["show_progress_type"] = "Latent bridge"
    p, processed = webui.txt2img("sd15", width=64, height=48, steps=2, batch_size=2)
    latent = shared.state.current_latent
    # What the progress API does from its HTTP thread.
    shared.state.do_set_current_image()
    grid = shared.state.current_image
    assert len(grid) == 2 and grid[0].dtype == torch.uint8
    client = webui.module("sidecar").client()
    wire = webui.module("wire")
    for index in range(2):
        reply = client.request("preview", {"latent": wire.encode(latent[index:index + 1]), "family": "v1"}, 10)
        image = reply["image"]
        expected = np.frombuffer(image["data"], dtype=np.uint8).reshape(image["height"], image["width"], 3)
        assert np.array_equal(grid[index].numpy(), expected)
    # Not the webui's own cheap approximation: the sidecar's (with its bias) is another picture.
    assert not torch.equal(grid[0], cheap_image(latent[0]))
    # Decoding for the final image never goes to the sidecar.
    full = sd_samplers_common.decode_first_stage(shared.sd_model, latent)
    assert full.shape == (2, 3, 48, 64)
    assert warnings_log() == []


def test_preview_method_under_lowvram_decodes_in_the_sampler_thread(webui, sidecar):
    start(webui, sidecar.url)
    shared.parallel_processing_allowed = False
    shared.opts.data["show_progress_type"] = "Latent bridge"
    shared.opts.data["show_progress_every_n_steps"] = 1
    webui.txt2img("sd15", width=64, height=64, steps=3)
    assert shared.state.id_live_preview == 3
    assert shared.state.current_image.shape == (8, 8, 3)
