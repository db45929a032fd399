"""Family detection for A1111, Forge and reForge model objects."""

import pytest

import checkpoints
from conftest import import_from_extension

families = import_from_extension("latent_bridge_shim.families")


@pytest.mark.parametrize(
    "build, family",
    [
        (checkpoints.sd15, "v1"),
        (checkpoints.sd2, "v1"),
        (checkpoints.sdxl, "xl"),
        (checkpoints.ssd, "xl"),
        (checkpoints.sd3, "v3"),
        (checkpoints.sd15_before_flags, "v1"),
        (checkpoints.forge_sd15, "v1"),
        (checkpoints.forge_sdxl, "xl"),
        (checkpoints.forge_flux, "fx"),
        (checkpoints.forge_unknown_dit, None),
        (checkpoints.reforge_sd15, "v1"),
        (checkpoints.reforge_sdxl_32ch, None),
    ],
)
def test_detects_the_family(build, family):
    assert families.detect(build()) == family


def test_no_model_no_family():
    assert families.detect(None) is None


def test_channel_counts_come_from_the_sidecar_with_the_known_values_as_fallback():
    assert [families.channels(name) for name in ("v1", "xl", "v3", "fx")] == [4, 4, 16, 16]
    hello = {"families": [{"name": "v1", "channels": 4}, {"name": "fx", "channels": 32}]}
    assert families.channels("fx", hello) == 32
    assert families.channels("v3", hello) == 16
    assert families.channels("fx", {"families": ["v1", "fx"]}) == 16
    assert families.channels("zz") is None
