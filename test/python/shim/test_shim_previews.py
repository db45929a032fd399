"""Live previews: every step's x0 reaches the sidecar's viewer with what the pass is and how it ended;
"Latent bridge" as the webui's preview method."""

import threading

import numpy as np
import pytest
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


def jobs_seen(viewer, job_prefix="txt2img"):
    """Each job's latest description (from `preview` and `job` events), by job name, in order of appearance."""
    jobs = {}
    for event in list(viewer.events):
        if event.get("event") in ("preview", "job") and event["job"]["job"].startswith(job_prefix):
            jobs[event["job"]["job"]] = event["job"]
    return jobs


def record_sent(client, op):
    """The messages of `op` the extension sends from now on, as the sidecar receives them."""
    sent = []
    original_send = client._send

    def recording_send(ws, message, drop_on_error=True):
        if message.get("op") == op:
            sent.append(message)
        return original_send(ws, message, drop_on_error)

    client._send = recording_send
    return sent


def test_each_pass_tells_the_viewer_what_it_is(webui, sidecar, warnings_log):
    start(webui, sidecar.url)
    viewer = Viewer(sidecar.url)
    ends = record_sent(webui.module("sidecar").client(), "end")
    prompt = "a red fox in fresh snow, " * 100
    try:
        webui.txt2img("sd15", prompt=prompt, seed=4242, sampler_name="Euler a", width=64, height=64, steps=4, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=6, denoising_strength=0.5)
        assert wait_for(lambda: len(ends) == 2 and sum(job["state"] == "finished" for job in jobs_seen(viewer).values()) == 2)
    finally:
        viewer.close()
    first, hires = jobs_seen(viewer).values()
    common = {"model": "sd15", "seed": 4242, "sampler": "Euler a"}
    assert first["meta"] == {**common, "prompt": first["meta"]["prompt"], "steps": 4, "pass": "first"}
    assert hires["meta"] == {**common, "prompt": hires["meta"]["prompt"], "steps": 6, "pass": "hires"}
    # The extension sends the prompt as the webui has it (up to its bound); the sidecar shortens it for viewers.
    assert first["meta"]["prompt"].startswith("a red fox in fresh snow, a red fox") and first["meta"]["prompt"].endswith("…")
    assert len(first["meta"]["prompt"]) == 300
    assert [(end["job"], end["outcome"]) for end in ends] == [(first["job"], "finished"), (hires["job"], "finished")]
    assert first["outcome"] == hires["outcome"] == "finished"
    assert first["step"] == first["total"] == 4
    assert warnings_log() == []


@pytest.mark.parametrize("how", ["interrupt", "skip"])
def test_an_interrupted_pass_says_so(webui, sidecar, how):
    start(webui, sidecar.url)
    viewer = Viewer(sidecar.url)

    def stop_after_step_3(params):
        if params.sampling_step == 2:
            if how == "interrupt":
                shared.state.interrupt()
            else:
                shared.state.skipped = True  # what the webui's Skip button does

    script_callbacks.on_cfg_denoiser(stop_after_step_3)
    # With Interrupt the webui leaves out the hires pass. (Skip, in the webui, would skip the hires
    # pass as well, but the stand-in's hires pass has no latent to return when skipped at once.)
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "denoising_strength": 0.5} if how == "interrupt" else {}
    try:
        p, processed = webui.txt2img("sd15", width=64, height=64, steps=8, **hires)
        assert processed.latents.shape == (1, 4, 8, 8)  # the webui goes on with the last latent, as ever
        assert wait_for(lambda: any(job["state"] == "finished" for job in jobs_seen(viewer).values()))
    finally:
        viewer.close()
    [job] = jobs_seen(viewer).values()
    assert job["state"] == "finished" and job["outcome"] == "interrupted"
    assert job["step"] == 4 and job["total"] == 8


def test_a_failed_pass_says_so_and_the_error_reaches_the_webui(webui, sidecar):
    start(webui, sidecar.url)
    viewer = Viewer(sidecar.url)
    webui.load("sd15")
    model = shared.sd_model
    evaluate = model.apply_model
    calls = []

    def failing_apply_model(x, sigma):
        calls.append(sigma)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return evaluate(x, sigma)

    model.apply_model = failing_apply_model
    try:
        with pytest.raises(RuntimeError, match="CUDA out of memory"):
            webui.txt2img("sd15", width=64, height=64, steps=6)
        assert wait_for(lambda: any(job["state"] == "finished" for job in jobs_seen(viewer).values()))
    finally:
        viewer.close()
    [job] = jobs_seen(viewer).values()
    assert job["outcome"] == "failed"
    assert job["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert job["step"] == 2


def test_the_sampler_never_waits_for_the_network(webui, sidecar):
    """store_latent returns before the sidecar has even seen the step, and so does the end of the pass."""
    start(webui, sidecar.url)
    client = webui.module("sidecar").client()
    gate = threading.Event()
    sent = []
    original_send = client._send

    def held_send(ws, message, drop_on_error=True):
        if message.get("op") in ("preview", "end"):
            gate.wait(10)
            sent.append(message.get("step", message["op"]))
        return original_send(ws, message, drop_on_error)

    client._send = held_send
    try:
        p, processed = webui.txt2img("sd15", prompt="a lighthouse", width=64, height=64, steps=5)
        assert sent == []  # the whole generation ran while the sender was held up
    finally:
        gate.set()
    assert wait_for(lambda: sent == [1, 2, 3, 4, 5, "end"])


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


def test_steps_sent_only_for_the_taesd_method_tell_viewers_nothing(webui, sidecar):
    """With the viewer's previews off, the TAESD method's steps go unpublished: no metadata, no job to end."""
    start(webui, sidecar.url)
    shared.opts.data["latent_bridge_previews"] = False
    shared.opts.data["show_progress_type"] = "Latent bridge (TAESD)"
    client = webui.module("sidecar").client()
    previews, ends, marks = record_sent(client, "preview"), record_sent(client, "end"), record_sent(client, "hello")
    webui.txt2img("sd15", prompt="a lighthouse", width=64, height=64, steps=3)
    # The sender thread sends in order: once this mark is out, whatever the pass queued is too.
    client.post("hello", lambda: {"protocol": 2, "client": "mark"})
    assert wait_for(lambda: any(m.get("client") == "mark" for m in marks))
    assert [(p["publish"], p["taesd"], "meta" in p) for p in previews] == [(False, True, False)] * 3
    assert ends == []


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
