"""Hires fix through the sidecar: cross-family conversion and NN upscaling of the first-pass latents.

The webui resizes first-pass latents with `torch.nn.functional.interpolate` inside
`StableDiffusionProcessingTxt2Img.sample_hr_pass`, after it has already swapped in the hires
checkpoint. The wrapper here hands the latents to the sidecar first (one request), then lets the
webui continue: with latents that already have the target size, its resize is told to be a
plain copy. Whatever goes wrong, the webui's own behaviour is what runs.
"""

from modules import shared

from . import families, notices, settings, sidecar, wire
from .client import SidecarError, SidecarTimeout, SidecarUnavailable

MODE_NAME = "Latent (latent-bridge)"
# What the webui does with our mode when the sidecar cannot help: the same as plain "Latent".
MODE = {"mode": "bilinear", "antialias": False}
INFOTEXT_KEY = "Latent bridge"

# The webui's latent downscale factor (processing.opt_f), the same for every family it runs.
_OPT_F = 8
# Given to the webui's interpolate once the latents have the target size: an exact copy.
_SAME_SIZE = {"mode": "nearest", "antialias": False}
_FIRST_PASS_FAMILY = "latent_bridge_first_pass_family"
_FALLBACK = "hires fix continues with the webui's own latent resize"


def remember_first_pass_family(p):
    """Runs as `sample` starts, while the first-pass checkpoint is still loaded."""
    setattr(p, _FIRST_PASS_FAMILY, families.detect(shared.sd_model))


def follow_first_pass_model(params):
    """on_cfg_denoiser: the first-pass latents are in the family of the model that sampled last.

    A refiner set to run in the first pass (the webui's "Hires fix: which pass to enable refiner
    for") is swapped in mid-pass, before this callback; the hires model then gets its latents.
    """
    p = getattr(getattr(params, "denoiser", None), "p", None)
    if p is None or getattr(p, "is_hr_pass", False) or not hasattr(p, _FIRST_PASS_FAMILY):
        return
    setattr(p, _FIRST_PASS_FAMILY, families.detect(shared.sd_model))


def sample_hr_pass(original, p, samples, decoded_samples, *args, **kwargs):
    try:
        bridged = _bridge(p, samples)
    except Exception as error:  # whatever goes wrong here, the image still gets made
        notices.warn_once("internal:hires", f"hires fix hook failed ({error!r}); {_FALLBACK}")
        bridged = None
    if bridged is None:
        return original(p, samples, decoded_samples, *args, **kwargs)
    latents, resized = bridged
    if not resized:
        return original(p, latents, decoded_samples, *args, **kwargs)
    scale_mode = p.latent_scale_mode
    p.latent_scale_mode = _SAME_SIZE
    try:
        return original(p, latents, decoded_samples, *args, **kwargs)
    finally:
        p.latent_scale_mode = scale_mode


def _bridge(p, samples):
    """(latents, resized) from the sidecar, or None when the webui should go on as it would."""
    # Decoded mode re-encodes with the hires model, which is already right across families;
    # an interrupted job returns the first-pass latents untouched.
    if getattr(p, "latent_scale_mode", None) is None or samples is None or shared.state.interrupted:
        return None
    ours = getattr(p, "hr_upscaler", None) == MODE_NAME
    source = getattr(p, _FIRST_PASS_FAMILY, None)
    target = families.detect(shared.sd_model)
    convert = source != target and bool(settings.get(settings.INTERPOSE))
    if not (ours or convert):
        return None
    if source is None or target is None:
        which = "first-pass" if source is None else "hires"
        notices.warn_once("family", f"cannot tell the latent family of the {which} checkpoint; {_FALLBACK}")
        _note(p, f"not applied (unknown {which} model family)")
        return None

    to = target if convert else source
    batch, _, height, width = samples.shape
    if ours:
        size = (p.hr_upscale_to_y // _OPT_F, p.hr_upscale_to_x // _OPT_F)
        op, fields = "hires", {"from": source, "to": to, "size": list(size)}
    else:
        size = (height, width)
        op, fields = "interpose", {"from": source, "to": to}

    try:
        fields["latent"] = wire.encode(samples)
        client = sidecar.client()
        reply = client.request(op, fields, settings.timeout())
        if "latent" not in reply:
            raise wire.WireError("the sidecar's reply holds no latent")
        latents = wire.decode(reply["latent"], samples)
        expected = (batch, families.channels(to, client.server), size[0], size[1])
        if tuple(latents.shape) != expected:
            raise wire.WireError(f"the sidecar sent a latent of shape {list(latents.shape)} where {list(expected)} was asked for")
        steps, warnings = _read_plan(reply.get("plan"))
    except (SidecarUnavailable, SidecarTimeout) as error:
        notices.warn_once("sidecar", f"{error}; {_FALLBACK}")
        _note(p, f"not applied (sidecar {'too slow' if isinstance(error, SidecarTimeout) else 'unavailable'})")
        return None
    except SidecarError as error:
        # Keyed by the whole message: another missing file is a new cause, worth its own warning.
        notices.warn_once(f"error:{error.code}:{error}", f"the sidecar could not do {source}->{to} {op}: {error}; {_FALLBACK}")
        _note(p, f"not applied ({error.code})")
        return None
    except wire.WireError as error:
        notices.warn_once("reply", f"{error}; {_FALLBACK}")
        _note(p, "not applied (bad reply)")
        return None

    notices.clear("sidecar", "reply")
    for code, message in warnings:
        notices.warn_once(f"plan:{code}:{message}", f"hires fix: {message}")
    kinds = {kind for kind, _ in steps}
    done = [f"{source}->{to} interposed"] if "interpose" in kinds else []
    if ours and size != (height, width):
        # The factor the user asked for (hires scale or resize), not the rounded latent ratio.
        factor = round(p.hr_upscale_to_y / (height * _OPT_F), 3)
        done.append(f"{'NN upscale' if 'upscale' in kinds else 'bilinear resize'} x{factor:g}")
    _note(p, ", ".join(done) or f"{source} unchanged")
    return latents, ours


def _read_plan(plan):
    """((kind, network) of each step, (code, message) of each warning) from a reply's plan
    (docs/protocol.md, "Plans"); a plan that is not what the protocol says is a bad reply."""
    try:
        steps = [(str(step["kind"]), step.get("network")) for step in plan["steps"]]
        warnings = [(str(warning["code"]), str(warning["message"])) for warning in plan["warnings"]]
    except (KeyError, TypeError, AttributeError) as error:
        raise wire.WireError(f"the sidecar sent a malformed plan ({error!r})") from error
    return steps, warnings


def _note(p, text):
    """Infotext entry, so the image says what happened to its latents."""
    params = getattr(p, "extra_generation_params", None)
    if isinstance(params, dict):
        params[INFOTEXT_KEY] = text
