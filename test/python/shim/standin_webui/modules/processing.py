"""modules/processing.py (§2, §5): txt2img with hires fix in the webui's order (A1111 1.10.1).

`sample` runs the first pass, swaps in the hires checkpoint, then calls `sample_hr_pass`,
which saves the "before highres fix" copies, resizes latents with exactly the webui's
`torch.nn.functional.interpolate` call (no help for dtypes torch cannot resize on the CPU),
then makes the image conditioning from the resized latents. The stand-in has no VAE, so both
passes return latents where the webui's `sample_hr_pass` returns decoded images.
"""

import json

import torch

from modules import images, sd_models, sd_samplers, shared
from modules.sd_samplers_common import decode_first_stage

opt_C = 4
opt_f = 8


class StableDiffusionProcessing:
    def __init__(self, prompt="", seed=1, width=512, height=512, steps=8, batch_size=1, n_iter=1, sampler_name="Euler", refiner_checkpoint=None, refiner_switch_at=None, dtype=torch.float32, device="cpu"):
        self.prompt = prompt
        self.seed = seed
        self.width = width
        self.height = height
        self.steps = steps
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.sampler_name = sampler_name
        self.refiner_checkpoint = refiner_checkpoint
        self.refiner_switch_at = refiner_switch_at
        self.refiner_checkpoint_info = None
        self.dtype = dtype
        self.device = torch.device(device)
        self.extra_generation_params = {}
        self.scripts = None
        self.sampler = None
        self.iteration = 0
        self.is_hr_pass = False
        self.denoising_strength = None
        self.rng = None

    @property
    def sd_model(self):
        return shared.sd_model

    def noise(self, shape, offset=0):
        """Stands in for rng.ImageRNG: seeded noise, one generator per batch iteration."""
        generator = torch.Generator().manual_seed(self.seed + self.iteration * 1000 + offset)
        return torch.randn(shape, generator=generator).to(self.device, self.dtype)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, enable_hr=False, denoising_strength=0.5, hr_scale=2.0, hr_upscaler=None, hr_second_pass_steps=0, hr_resize_x=0, hr_resize_y=0, hr_checkpoint_name=None, **kwargs):
        super().__init__(**kwargs)
        self.enable_hr = enable_hr
        self.denoising_strength = denoising_strength
        self.hr_scale = hr_scale
        self.hr_upscaler = hr_upscaler
        self.hr_second_pass_steps = hr_second_pass_steps
        self.hr_resize_x = hr_resize_x
        self.hr_resize_y = hr_resize_y
        self.hr_checkpoint_name = hr_checkpoint_name
        self.hr_checkpoint_info = None
        self.hr_upscale_to_x = 0
        self.hr_upscale_to_y = 0
        self.truncate_x = 0
        self.truncate_y = 0
        self.latent_scale_mode = None
        # What the hires pass started sampling from, kept for the tests (the webui does not keep it).
        self.hr_input_latents = None

    def calculate_target_resolution(self):
        if self.hr_resize_x == 0 and self.hr_resize_y == 0:
            self.extra_generation_params["Hires upscale"] = self.hr_scale
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)
        else:
            self.extra_generation_params["Hires resize"] = f"{self.hr_resize_x}x{self.hr_resize_y}"
            if self.hr_resize_y == 0:
                self.hr_upscale_to_x = self.hr_resize_x
                self.hr_upscale_to_y = self.hr_resize_x * self.height // self.width
            elif self.hr_resize_x == 0:
                self.hr_upscale_to_x = self.hr_resize_y * self.width // self.height
                self.hr_upscale_to_y = self.hr_resize_y
            else:
                target_w = self.hr_resize_x
                target_h = self.hr_resize_y
                src_ratio = self.width / self.height
                dst_ratio = self.hr_resize_x / self.hr_resize_y
                if src_ratio < dst_ratio:
                    self.hr_upscale_to_x = self.hr_resize_x
                    self.hr_upscale_to_y = self.hr_resize_x * self.height // self.width
                else:
                    self.hr_upscale_to_x = self.hr_resize_y * self.width // self.height
                    self.hr_upscale_to_y = self.hr_resize_y
                self.truncate_x = (self.hr_upscale_to_x - target_w) // opt_f
                self.truncate_y = (self.hr_upscale_to_y - target_h) // opt_f

    def init(self):
        if self.enable_hr:
            self.extra_generation_params["Denoising strength"] = self.denoising_strength
            if self.hr_checkpoint_name and self.hr_checkpoint_name != "Use same checkpoint":
                self.hr_checkpoint_info = sd_models.get_closet_checkpoint_match(self.hr_checkpoint_name)
                if self.hr_checkpoint_info is None:
                    raise Exception(f"Could not find checkpoint with name {self.hr_checkpoint_name}")
                self.extra_generation_params["Hires checkpoint"] = self.hr_checkpoint_info.short_title
            self.latent_scale_mode = shared.latent_upscale_modes.get(self.hr_upscaler, None) if self.hr_upscaler is not None else shared.latent_upscale_modes.get(shared.latent_upscale_default_mode, "nearest")
            if self.enable_hr and self.latent_scale_mode is None:
                if not any(x.name == self.hr_upscaler for x in shared.sd_upscalers):
                    raise Exception(f"could not find upscaler named {self.hr_upscaler}")
            self.calculate_target_resolution()
            if self.hr_upscaler is not None:
                self.extra_generation_params["Hires upscaler"] = self.hr_upscaler

    def txt2img_image_conditioning(self, x, width=None, height=None):
        """What the webui gives a model that is not an inpainting one: a dummy per latent of the batch."""
        return x.new_zeros(x.shape[0], 5, 1, 1)

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)

    def save_samples(self):
        return True

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        channels = getattr(shared.sd_model, "latent_channels", opt_C)
        x = self.noise((self.batch_size, channels, self.height // opt_f, self.width // opt_f))
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning, image_conditioning=self.txt2img_image_conditioning(x))
        del x
        if not self.enable_hr:
            return samples
        decoded_samples = None  # latent modes only: the stand-in has no decoded path

        with sd_models.SkipWritingToConfig():
            sd_models.reload_model_weights(info=self.hr_checkpoint_info)

        return self.sample_hr_pass(samples, decoded_samples, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        if shared.state.interrupted:
            return samples

        self.is_hr_pass = True
        target_width = self.hr_upscale_to_x
        target_height = self.hr_upscale_to_y

        def save_intermediate(image, index):
            """Saves the image before hires fix, decoded in full by the model loaded now (the hires one)."""
            if not self.save_samples() or not shared.opts.save_images_before_highres_fix:
                return
            image = sd_samplers.sample_to_image(image, index, approximation=0)
            images.save_image(image, None, "", None, None, "png", info=None, p=self, suffix="-before-highres-fix")

        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)

        if self.latent_scale_mode is not None:
            for i in range(samples.shape[0]):
                save_intermediate(samples, i)

            samples = torch.nn.functional.interpolate(samples, size=(target_height // opt_f, target_width // opt_f), mode=self.latent_scale_mode["mode"], antialias=self.latent_scale_mode["antialias"])

            if getattr(self, "inpainting_mask_weight", shared.opts.inpainting_mask_weight) < 1.0:
                image_conditioning = self.img2img_image_conditioning(decode_first_stage(self.sd_model, samples), samples)
            else:
                image_conditioning = self.txt2img_image_conditioning(samples)
        else:
            raise NotImplementedError("the stand-in webui has no decoded hires path")

        shared.state.nextjob()

        samples = samples[:, :, self.truncate_y // 2:samples.shape[2] - (self.truncate_y + 1) // 2, self.truncate_x // 2:samples.shape[3] - (self.truncate_x + 1) // 2]
        self.hr_input_latents = samples

        noise = self.noise(samples.shape, offset=1)
        samples = self.sampler.sample_img2img(self, samples, noise, None, None, steps=self.hr_second_pass_steps or self.steps, image_conditioning=image_conditioning)

        self.sampler = None
        self.is_hr_pass = False
        return samples


def quote(text):
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def create_infotext(p):
    generation_params = {"Steps": p.steps, "Sampler": p.sampler_name, "Seed": p.seed, "Size": f"{p.width}x{p.height}", **p.extra_generation_params}
    return ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in generation_params.items() if v is not None)


class Processed:
    def __init__(self, p, latents, infotext):
        self.latents = latents
        self.infotext = infotext
        self.extra_generation_params = dict(p.extra_generation_params)


def process_images(p):
    """process_images_inner in short: one `sample` per batch iteration, the main checkpoint back first."""
    shared.state.begin(job="txt2img")
    try:
        if p.refiner_checkpoint not in (None, "", "None", "none"):
            p.refiner_checkpoint_info = sd_models.get_closet_checkpoint_match(p.refiner_checkpoint)
            if p.refiner_checkpoint_info is None:
                raise Exception(f"Could not find checkpoint with name {p.refiner_checkpoint}")
        p.init()
        shared.state.job_count = p.n_iter * (2 if p.enable_hr else 1)
        outputs = []
        for n in range(p.n_iter):
            p.iteration = n
            sd_models.reload_model_weights()  # the model can have been changed by the refiner
            samples = p.sample(conditioning=None, unconditional_conditioning=None, seeds=None, subseeds=None, subseed_strength=0.0, prompts=[p.prompt])
            outputs.append(samples)
            shared.state.nextjob()
        return Processed(p, torch.cat(outputs), create_infotext(p))
    finally:
        shared.state.end()
