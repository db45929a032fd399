"""modules/sd_samplers.py: create_sampler, and the preview helpers the webui re-exports here."""

from modules.sd_samplers_common import sample_to_image, samples_to_image_grid  # noqa: F401
from modules.sd_samplers_kdiffusion import KDiffusionSampler


def create_sampler(name, model):
    return KDiffusionSampler(name, model)
