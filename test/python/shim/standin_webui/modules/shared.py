"""modules/shared.py: the webui's globals (§4, §5, §6)."""

import argparse

from modules import options, shared_options

cmd_opts = argparse.Namespace()

OptionInfo = options.OptionInfo
OptionHTML = options.OptionHTML
options_section = options.options_section

opts = options.Options(shared_options.options_templates, shared_options.restricted_opts)

# False under --lowvram/--medvram: previews are then decoded in the sampler thread.
parallel_processing_allowed = True

sd_model = None
sd_upscalers = []

latent_upscale_default_mode = "Latent"
latent_upscale_modes = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}

from modules import shared_state  # noqa: E402  (needs this module's names, as in the webui)

state = shared_state.State()
