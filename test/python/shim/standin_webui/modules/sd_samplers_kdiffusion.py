"""modules/sd_samplers_kdiffusion.py: an Euler sampler over the stand-in model, step by step as k-diffusion runs."""

import torch

from modules import sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model):
        super().__init__(funcname)
        self.model_wrap_cfg = CFGDenoiser(self)

    def _euler(self, x, sigmas):
        for i in range(len(sigmas) - 1):
            denoised = self.model_wrap_cfg(x, sigmas[i])
            d = (x - denoised) / sigmas[i]
            x = x + d * (sigmas[i + 1] - sigmas[i])
            self.callback_state({"i": i})
        return x

    @staticmethod
    def _check_image_conditioning(x, image_conditioning):
        """The webui's CFGDenoiser takes one image conditioning per latent of the batch, by index."""
        if image_conditioning is not None and image_conditioning.shape[0] < x.shape[0]:
            raise IndexError(f"index {image_conditioning.shape[0]} is out of bounds for dimension 0 with size {image_conditioning.shape[0]}")

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        self._check_image_conditioning(x, image_conditioning)
        steps = steps or p.steps
        sigmas = torch.linspace(1.0, 0.0, steps + 1)
        self.model_wrap_cfg.p = p
        x = x * sigmas[0]
        return self.launch_sampling(steps, lambda: self._euler(x, sigmas))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        self._check_image_conditioning(x, image_conditioning)
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        sigmas = torch.linspace(1.0, 0.0, steps + 1)[steps - t_enc - 1:]
        self.model_wrap_cfg.p = p
        xi = x + noise * sigmas[0]
        return self.launch_sampling(t_enc + 1, lambda: self._euler(xi, sigmas))
