"""modules/sd_samplers_cfg_denoiser.py (§3, §6): one model evaluation; hands the x0 to store_latent."""

from modules import script_callbacks, sd_samplers_common, shared


class CFGDenoiser:
    def __init__(self, sampler):
        self.sampler = sampler
        self.step = 0
        self.steps = None
        self.total_steps = None
        self.p = None

    def forward(self, x, sigma):
        if shared.state.interrupted or shared.state.skipped:
            raise sd_samplers_common.InterruptedException
        sd_samplers_common.apply_refiner(self, sigma)
        params = script_callbacks.CFGDenoiserParams(x, None, sigma, shared.state.sampling_step, shared.state.sampling_steps, None, None, self)
        script_callbacks.cfg_denoiser_callback(params)
        denoised = shared.sd_model.apply_model(params.x, params.sigma)
        # "Prompt" is the default live preview subject: the positive prompt's x0 (§6).
        self.sampler.last_latent = denoised
        sd_samplers_common.store_latent(self.sampler.last_latent)
        self.step += 1
        return denoised

    __call__ = forward
