"""modules/sd_samplers_common.py (§6): preview decoding, store_latent and the Sampler base."""

import torch

from modules import sd_models, sd_vae_approx, shared

approximation_indexes = {"Full": 0, "Approx NN": 1, "Approx cheap": 2, "TAESD": 3}


def samples_to_images_tensor(sample, approximation=None, model=None):
    """Transforms latents into RGB image tensors with values in [-1, 1]."""
    if approximation is None or (shared.state.interrupted and shared.opts.live_preview_fast_interrupt):
        approximation = approximation_indexes.get(shared.opts.show_progress_type, 0)
        if approximation == 0 and getattr(shared.cmd_opts, "lowvram", False) and not shared.opts.live_preview_allow_lowvram_full:
            approximation = 1

    if approximation == 2:
        x_sample = sd_vae_approx.cheap_approximation(sample)
    elif approximation == 1:
        x_sample = sd_vae_approx.model()(sample).detach()
    elif approximation == 3:
        raise NotImplementedError("the stand-in has no TAESD")
    else:
        if model is None:
            model = shared.sd_model
        x_sample = model.decode_first_stage(sample)
    return x_sample


def single_sample_to_image(sample, approximation=None):
    """The webui returns a PIL image; the stand-in (no PIL) returns the same pixels as a uint8 HWC tensor."""
    x_sample = samples_to_images_tensor(sample.unsqueeze(0), approximation)[0] * 0.5 + 0.5
    x_sample = torch.clamp(x_sample.float(), min=0.0, max=1.0)
    x_sample = 255.0 * x_sample.permute(1, 2, 0)
    return x_sample.to(device="cpu", dtype=torch.uint8)


def decode_first_stage(model, x):
    """The full decode the webui makes for images (sd_vae_decode_method), never a live preview."""
    approx_index = approximation_indexes.get(shared.opts.sd_vae_decode_method, 0)
    return samples_to_images_tensor(x, approx_index, model)


def sample_to_image(samples, index=0, approximation=None):
    return single_sample_to_image(samples[index], approximation)


def samples_to_image_grid(samples, approximation=None):
    """The webui pastes these into one grid image; the stand-in keeps the list."""
    return [single_sample_to_image(sample, approximation) for sample in samples]


def store_latent(decoded):
    shared.state.current_latent = decoded
    if shared.opts.live_previews_enable and shared.opts.show_progress_every_n_steps > 0 and shared.state.sampling_step % shared.opts.show_progress_every_n_steps == 0:
        if not shared.parallel_processing_allowed:
            shared.state.assign_current_image(sample_to_image(decoded))


def setup_img2img_steps(p, steps=None):
    steps = steps or p.steps
    t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


class InterruptedException(BaseException):
    pass


def apply_refiner(cfg_denoiser, sigma=None):
    """Swaps in the refiner mid-pass, the latents going on as they are. The stand-in's sigmas are
    not a model's, so the switch point is counted in sampling steps (the webui's
    refiner_switch_by_sample_steps); it has no conds to set up again afterwards."""
    completed_ratio = cfg_denoiser.step / cfg_denoiser.total_steps
    refiner_switch_at = cfg_denoiser.p.refiner_switch_at
    refiner_checkpoint_info = cfg_denoiser.p.refiner_checkpoint_info

    if refiner_switch_at is not None and completed_ratio < refiner_switch_at:
        return False
    if refiner_checkpoint_info is None or shared.sd_model.sd_checkpoint_info == refiner_checkpoint_info:
        return False
    if getattr(cfg_denoiser.p, "enable_hr", False):
        is_second_pass = cfg_denoiser.p.is_hr_pass
        if shared.opts.hires_fix_refiner_pass == "first pass" and is_second_pass:
            return False
        if shared.opts.hires_fix_refiner_pass == "second pass" and not is_second_pass:
            return False
        if shared.opts.hires_fix_refiner_pass != "second pass":
            cfg_denoiser.p.extra_generation_params["Hires refiner"] = shared.opts.hires_fix_refiner_pass

    cfg_denoiser.p.extra_generation_params["Refiner"] = refiner_checkpoint_info.short_title
    cfg_denoiser.p.extra_generation_params["Refiner switch at"] = refiner_switch_at
    with sd_models.SkipWritingToConfig():
        sd_models.reload_model_weights(info=refiner_checkpoint_info)
    return True


class Sampler:
    def __init__(self, funcname):
        self.funcname = funcname
        self.last_latent = None
        self.stop_at = None
        self.model_wrap_cfg = None
        self.p = None

    def callback_state(self, d):
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        shared.state.sampling_step = step

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = steps
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent
