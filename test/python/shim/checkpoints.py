"""Stand-in checkpoints: family flags as each webui sets them, and a denoiser of plain torch ops.

A1111 (§8): set_model_type sets is_sd1/is_sd2/is_sdxl/is_ssd/is_sd3 and latent_channels;
ldm/sgm models carry scale_factor, SD3Inferencer does not. Forge (§9): a ForgeDiffusionEngine
with the flags but no scale_factor/latent_channels, Flux without any flag. reForge: the flags
plus forge_objects.unet.model.latent_channels.
"""

import types

import torch


class StandInModel:
    def __init__(self, seed, latent_channels=4, **attributes):
        self.is_sd1 = self.is_sd2 = self.is_sdxl = self.is_ssd = self.is_sd3 = False
        self.latent_channels = latent_channels
        for name, value in attributes.items():
            setattr(self, name, value)
        generator = torch.Generator().manual_seed(seed)
        self.gain = torch.rand(1, latent_channels, 1, 1, generator=generator) * 0.5 + 0.5
        self.offset = torch.randn(1, latent_channels, 1, 1, generator=generator) * 0.3

    def apply_model(self, x, sigma):
        """An x0 prediction: pulls x towards a per-channel offset, more so at low noise."""
        gain = self.gain.to(x.device, x.dtype)
        offset = self.offset.to(x.device, x.dtype)
        return x * gain / (1.0 + float(sigma)) + offset

    def decode_first_stage(self, x):
        return torch.nn.functional.interpolate(x[:, :3].float(), scale_factor=8.0, mode="nearest")


def sd15():
    return StandInModel(15, is_sd1=True, scale_factor=0.18215, cond_stage_model=types.SimpleNamespace())


def sd2():
    return StandInModel(21, is_sd2=True, scale_factor=0.18215, cond_stage_model=types.SimpleNamespace(model=object()))


def sdxl():
    return StandInModel(10, is_sdxl=True, scale_factor=0.13025, conditioner=object())


def ssd():
    return StandInModel(11, is_sdxl=True, is_ssd=True, scale_factor=0.13025, conditioner=object())


def sd3():
    return StandInModel(3, latent_channels=16, is_sd3=True)


def sd15_before_flags():
    """An A1111 model from before is_sd1 existed: only the ldm scale factor tells."""
    model = StandInModel(16, scale_factor=0.18215)
    del model.is_sd1, model.is_sd2, model.is_sdxl, model.is_ssd, model.is_sd3
    return model


class ForgeEngine(StandInModel):
    """Forge's ForgeDiffusionEngine: flags, forge_objects, no scale_factor or latent_channels."""

    def __init__(self, seed, legacy, vae_channels, vae_scale, **flags):
        super().__init__(seed, latent_channels=vae_channels, **flags)
        del self.latent_channels
        self._legacy = legacy
        vae_model = types.SimpleNamespace(scaling_factor=vae_scale)
        self.forge_objects = types.SimpleNamespace(vae=types.SimpleNamespace(latent_channels=vae_channels, first_stage_model=vae_model))

    def is_webui_legacy_model(self):
        return self._legacy


def forge_sd15():
    return ForgeEngine(150, True, 4, 0.18215, is_sd1=True)


def forge_sdxl():
    return ForgeEngine(100, True, 4, 0.13025, is_sdxl=True)


def forge_flux():
    return ForgeEngine(1, False, 16, 0.3611)


def forge_unknown_dit():
    """A non-legacy Forge model that is not Flux (another VAE scale)."""
    return ForgeEngine(2, False, 16, 0.5)


def reforge_sdxl_32ch():
    """reForge's "SDXL_flux2": flagged SDXL, 32-channel latents on the UNet wrapper."""
    model = StandInModel(32, is_sdxl=True)
    del model.latent_channels
    model.forge_objects = types.SimpleNamespace(unet=types.SimpleNamespace(model=types.SimpleNamespace(latent_channels=32)))
    return model


def reforge_sd15():
    model = StandInModel(151, is_sd1=True)
    del model.latent_channels
    model.forge_objects = types.SimpleNamespace(unet=types.SimpleNamespace(model=types.SimpleNamespace(latent_channels=4)))
    return model
