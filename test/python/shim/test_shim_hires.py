"""Hires fix through the real sidecar: NN upscale to exact sizes, cross-family interposing, dtypes, infotext."""

import re

import pytest
import torch

import reference_nets
from conftest import CONFORMANCE, import_from_extension
from modules import images, sd_samplers_common, shared

OUR_MODE = "Latent (latent-bridge)"
# A1111's infotext parser (generation_parameters_copypaste.re_param).
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_infotext(text):
    params = {}
    for key, value in RE_PARAM.findall(text):
        params[key.strip()] = value[1:-1] if value.startswith('"') else value
    return params


def reference(name, fac_or_config=None):
    case = {
        "xl-to-v1": ({"kind": "interposer", "config": {"ch_in": 4, "ch_out": 4, "ch_mid": 64, "scale": 1.0, "blocks": 12}}, "interposer-xl-to-v1.weights.safetensors"),
        "v1-x1.5": ({"kind": "upscaler", "config": {"fac": 1.5, "depth": 16}}, "upscaler-x1.5.weights.safetensors"),
        "v1-x2.0": ({"kind": "upscaler", "config": {"fac": 2.0, "depth": 16}}, "upscaler-x2.0.weights.safetensors"),
    }[name]
    return reference_nets.build(case[0], CONFORMANCE / case[1])


def first_pass(webui, checkpoint, **kwargs):
    """The first-pass latents of a generation: the same run without hires fix."""
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("hr_") and k not in ("enable_hr", "denoising_strength")}
    _, processed = webui.txt2img(checkpoint, **kwargs)
    return processed.latents


def run(webui, sidecar, checkpoint="sd15", **kwargs):
    webui.start("--latent-bridge-url", sidecar.url, "--latent-bridge-autostart", "off")
    shared.opts.data["latent_bridge_previews"] = False
    latents = first_pass(webui, checkpoint, **kwargs)
    p, processed = webui.txt2img(checkpoint, enable_hr=True, denoising_strength=0.4, **kwargs)
    return latents, p, processed


def assert_close(actual, expected, tolerance):
    assert actual.shape == expected.shape
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= tolerance * (1.0 + expected.float().abs().max().item()), error


@torch.no_grad()
def test_same_family_nn_upscale_to_an_odd_target_size(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, width=520, height=392, steps=4, hr_scale=1.5, hr_upscaler=OUR_MODE)
    assert first.shape == (1, 4, 49, 65)
    assert p.hr_input_latents.shape == (1, 4, 73, 97)  # 588 // 8, 780 // 8
    expected = reference("v1-x1.5")(first / 0.18215) * 0.18215
    assert_close(p.hr_input_latents, expected, 1e-4)
    assert processed.latents.shape == (1, 4, 73, 97)
    assert processed.extra_generation_params["Latent bridge"] == "NN upscale x1.5"
    assert parse_infotext(processed.infotext)["Latent bridge"] == "NN upscale x1.5"
    assert p.latent_scale_mode == shared.latent_upscale_modes[OUR_MODE]  # restored after the hires pass
    assert warnings_log() == []


@torch.no_grad()
def test_resize_to_a_size_that_no_network_factor_reaches(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, width=200, height=136, steps=3, hr_resize_x=330, hr_resize_y=0, hr_upscaler=OUR_MODE)
    # 330 x (330 * 136 // 200 = 224): latent 28 x 41 from 17 x 25.
    assert p.hr_input_latents.shape == (1, 4, 28, 41)
    assert processed.extra_generation_params["Latent bridge"].startswith("NN upscale x1.6")
    assert warnings_log() == []


@torch.no_grad()
def test_sdxl_first_pass_sd15_hires_with_plain_latent_is_interposed(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, "sdxl", width=256, height=192, steps=3, hr_scale=2.0, hr_upscaler="Latent", hr_checkpoint_name="sd15")
    assert shared.sd_model.is_sd1  # the hires checkpoint is loaded
    interposed = reference("xl-to-v1")(first / 0.13025) * 0.18215
    expected = torch.nn.functional.interpolate(interposed, size=(48, 64), mode="bilinear", antialias=False)
    assert_close(p.hr_input_latents, expected, 1e-4)
    assert processed.extra_generation_params["Latent bridge"] == "xl->v1 interposed"
    assert parse_infotext(processed.infotext)["Hires checkpoint"] == "sd15"
    assert warnings_log() == []


@torch.no_grad()
def test_sdxl_first_pass_sd15_hires_with_our_mode_is_interposed_and_upscaled(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, "sdxl", width=256, height=192, steps=3, hr_scale=2.0, hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15")
    interposed = reference("xl-to-v1")(first / 0.13025)
    expected = reference("v1-x2.0")(interposed) * 0.18215
    assert_close(p.hr_input_latents, expected, 1e-4)
    assert processed.extra_generation_params["Latent bridge"] == "xl->v1 interposed, NN upscale x2"
    assert parse_infotext(processed.infotext)["Latent bridge"] == "xl->v1 interposed, NN upscale x2"
    assert warnings_log() == []


def resize_fp16_as_on_a_gpu(monkeypatch):
    """The webui holds float16 latents only on GPUs, where interpolate takes them; torch 1.13
    cannot on the CPU (nor could the webui there), so the webui's resize goes through float32."""
    interpolate = torch.nn.functional.interpolate

    def gpu_like(input, *args, **kwargs):
        if input.dtype == torch.float16 and input.device.type == "cpu":
            return interpolate(input.float(), *args, **kwargs).half()
        return interpolate(input, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", gpu_like)


@torch.no_grad()
def test_a_refiner_in_the_first_pass_decides_what_the_hires_model_is_given(webui, sidecar, warnings_log):
    """SD1.5 refined by SDXL in the first pass: its latents end in SDXL's space, and the hires
    pass (same checkpoint: SD1.5 loaded back) gets them converted xl -> v1."""
    webui.start("--latent-bridge-url", sidecar.url, "--latent-bridge-autostart", "off")
    shared.opts.data["latent_bridge_previews"] = False
    shared.opts.data["hires_fix_refiner_pass"] = "first pass"
    refined = dict(width=128, height=128, steps=4, refiner_checkpoint="sdxl", refiner_switch_at=0.5)
    first = first_pass(webui, "sd15", **refined)
    p, processed = webui.txt2img("sd15", enable_hr=True, denoising_strength=0.4, hr_scale=1.5, hr_upscaler="Latent", **refined)
    assert processed.extra_generation_params["Refiner"] == "sdxl"
    assert processed.extra_generation_params["Latent bridge"] == "xl->v1 interposed"
    interposed = reference("xl-to-v1")(first / 0.13025) * 0.18215
    expected = torch.nn.functional.interpolate(interposed, size=(24, 24), mode="bilinear", antialias=False)
    assert_close(p.hr_input_latents, expected, 1e-4)
    assert warnings_log() == []


@torch.no_grad()
def test_the_copy_saved_before_hires_fix_is_decoded_from_converted_latents(webui, sidecar):
    """The webui saves it from the latents it is about to resize, with the hires model (already
    loaded): that model gets latents of its own family."""
    first, p, processed = run(webui, sidecar, "sdxl", width=64, height=64, steps=2, batch_size=2, hr_scale=2.0, hr_upscaler="Latent", hr_checkpoint_name="sd15")
    assert images.saved == []
    shared.opts.data["save_images_before_highres_fix"] = True
    p, processed = webui.txt2img("sdxl", enable_hr=True, denoising_strength=0.4, width=64, height=64, steps=2, batch_size=2, hr_scale=2.0, hr_upscaler="Latent", hr_checkpoint_name="sd15")
    assert [suffix for _, suffix in images.saved] == ["-before-highres-fix"] * 2
    interposed = reference("xl-to-v1")(first / 0.13025) * 0.18215
    for index, (image, _) in enumerate(images.saved):
        expected = sd_samplers_common.sample_to_image(interposed, index, approximation=0)
        assert image.shape == expected.shape == (64, 64, 3)
        assert (image.int() - expected.int()).abs().max() <= 1


@torch.no_grad()
def test_batch_of_three_in_fp16_comes_back_fp16(webui, sidecar, warnings_log, monkeypatch):
    resize_fp16_as_on_a_gpu(monkeypatch)
    first, p, processed = run(webui, sidecar, "sdxl", width=128, height=128, steps=3, batch_size=3, dtype=torch.float16, hr_scale=1.5, hr_upscaler=OUR_MODE, hr_checkpoint_name="sd15")
    assert first.dtype == torch.float16 and first.shape == (3, 4, 16, 16)
    assert p.hr_input_latents.dtype == torch.float16 and p.hr_input_latents.shape == (3, 4, 24, 24)
    expected = reference("v1-x1.5")(reference("xl-to-v1")(first.float() / 0.13025)) * 0.18215
    assert_close(p.hr_input_latents, expected, 2e-3)
    # Each image of the batch got its own conversion (not the first one three times).
    assert not torch.equal(p.hr_input_latents[0], p.hr_input_latents[1])
    assert processed.latents.dtype == torch.float16
    assert warnings_log() == []


@torch.no_grad()
def test_bfloat16_and_two_batch_iterations(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, width=128, height=64, steps=2, n_iter=2, dtype=torch.bfloat16, hr_scale=2.0, hr_upscaler=OUR_MODE)
    assert processed.latents.dtype == torch.bfloat16 and processed.latents.shape == (2, 4, 16, 32)
    expected = reference("v1-x2.0")(first[1:].float() / 0.18215) * 0.18215
    assert_close(p.hr_input_latents, expected, 2e-2)  # the second iteration's
    assert warnings_log() == []


@torch.no_grad()
def test_same_family_plain_latent_is_left_to_the_webui(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, width=128, height=128, steps=2, hr_scale=1.5, hr_upscaler="Latent (bicubic)")
    expected = torch.nn.functional.interpolate(first, size=(24, 24), mode="bicubic", antialias=False)
    assert torch.equal(p.hr_input_latents, expected)
    assert "Latent bridge" not in processed.extra_generation_params
    assert warnings_log() == []


@torch.no_grad()
def test_sd3_has_no_upscaler_so_the_sidecar_resizes_and_says_so_once(webui, sidecar, warnings_log):
    for _ in range(2):
        first, p, processed = run(webui, sidecar, "sd3", width=128, height=128, steps=2, hr_scale=2.0, hr_upscaler=OUR_MODE)
        assert p.hr_input_latents.shape == (1, 16, 32, 32)
        assert processed.extra_generation_params["Latent bridge"] == "bilinear resize x2"
    assert len(warnings_log()) == 1 and "no neural upscaler" in warnings_log()[0]


def test_interposing_can_be_switched_off(webui, sidecar, warnings_log):
    first, p, processed = run(webui, sidecar, "sdxl", width=128, height=128, steps=2, hr_scale=2.0, hr_upscaler="Latent", hr_checkpoint_name="sd2")
    assert processed.extra_generation_params["Latent bridge"] == "xl->v1 interposed"
    shared.opts.data["latent_bridge_interpose"] = False
    p, processed = webui.txt2img("sdxl", enable_hr=True, width=128, height=128, steps=2, hr_scale=2.0, hr_upscaler="Latent", hr_checkpoint_name="sd2")
    assert torch.equal(p.hr_input_latents, torch.nn.functional.interpolate(first, size=(32, 32), mode="bilinear", antialias=False))
    assert "Latent bridge" not in processed.extra_generation_params


def test_wire_round_trip_keeps_dtype_device_and_values():
    wire = import_from_extension("latent_bridge_shim.wire")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        tensor = torch.randn(2, 4, 3, 5).to(dtype)
        message = wire.encode(tensor)
        assert message["shape"] == [2, 4, 3, 5] and len(message["data"]) == tensor.numel() * tensor.element_size()
        assert torch.equal(wire.decode(message, tensor), tensor)
    doubles = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    assert wire.encode(doubles)["dtype"] == "float32"
    with pytest.raises(wire.WireError):
        wire.decode({"dtype": "float32", "shape": [1, 4, 2, 2], "data": b"\0" * 10}, doubles)
    with pytest.raises(wire.WireError):
        wire.decode({"dtype": "int8", "shape": [1], "data": b"\0"}, doubles)
