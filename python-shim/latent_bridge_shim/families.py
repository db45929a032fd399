"""Which latent family the loaded checkpoint works in.

The sidecar knows everything about a family (channels, scale, shift, networks) and says what the
shim needs in its `hello` reply; the shim only has to name the family. Names follow city96's
interposer: v1 = SD1.x/SD2.x, xl = SDXL (refiner, SSD), v3 = SD3, fx = Flux.1. Stable Cascade (ca)
is not a webui model, so it is never detected.
"""

# Channels of a model-space latent, until a sidecar's hello says otherwise (then its word counts).
_FALLBACK_CHANNELS = {"v1": 4, "xl": 4, "v3": 16, "fx": 16, "ca": 4}

# VAE scale factors, for models that carry no family flag (A1111 before is_sd1 existed).
_SCALE_FAMILIES = ((0.18215, "v1"), (0.13025, "xl"))
# Forge reads Flux's scale from the VAE config; anything else without a flag is not Flux.
_FLUX_SCALE = 0.3611


def channels(family, hello=None):
    """Latent channels of a family: as the sidecar's hello reply describes it, else the known value."""
    described = (hello or {}).get("families")
    if isinstance(described, list):
        for entry in described:
            if isinstance(entry, dict) and entry.get("name") == family and isinstance(entry.get("channels"), int):
                return entry["channels"]
    return _FALLBACK_CHANNELS.get(family)


def detect(model):
    """The family of a webui model object, or None when it is none we can convert.

    Works on A1111's ldm/sgm models and SD3Inferencer, Forge's ForgeDiffusionEngine
    (where Flux and Chroma have no flag) and reForge's models (flags from forge_loader).
    """
    if model is None:
        return None
    channels = _latent_channels(model)
    if getattr(model, "is_sd3", False):
        return "v3" if channels in (None, 16) else None
    if getattr(model, "is_sdxl", False):
        # reForge's "SDXL_flux2" variant is flagged SDXL but has 32-channel latents.
        return "xl" if channels in (None, 4) else None
    if getattr(model, "is_sd1", False) or getattr(model, "is_sd2", False):
        return "v1" if channels in (None, 4) else None
    if _is_forge_flux(model):
        return "fx"
    scale = getattr(model, "scale_factor", None)
    if isinstance(scale, (int, float)) and channels in (None, 4):
        for known, family in _SCALE_FAMILIES:
            if abs(scale - known) < 1e-4:
                return family
    return None


def _latent_channels(model):
    """Latent channels where the webui exposes them; None where it does not (Forge)."""
    channels = getattr(model, "latent_channels", None)
    if isinstance(channels, int):
        return channels
    # reForge keeps the count on the UNet wrapper; Forge on the VAE wrapper.
    forge_objects = getattr(model, "forge_objects", None)
    for path in (("unet", "model", "latent_channels"), ("vae", "latent_channels")):
        value = forge_objects
        for name in path:
            value = getattr(value, name, None)
        if isinstance(value, int):
            return value
    return None


def _is_forge_flux(model):
    """Forge's own test for Flux (and Chroma, which uses Flux latents): not a legacy webui model."""
    is_legacy = getattr(model, "is_webui_legacy_model", None)
    if not callable(is_legacy) or is_legacy():
        return False
    if _latent_channels(model) not in (None, 16):
        return False
    vae = getattr(getattr(model, "forge_objects", None), "vae", None)
    scale = getattr(getattr(vae, "first_stage_model", None), "scaling_factor", None)
    return scale is None or abs(float(scale) - _FLUX_SCALE) < 1e-4
