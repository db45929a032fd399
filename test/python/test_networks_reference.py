"""The sidecar's networks against their architectures written in PyTorch, through the real
`latent-bridge net` command: the conformance vectors first (which pins the PyTorch reference),
then sizes and batches the vectors do not cover (odd sizes, where nearest resizing by 1.25, 1.5
and 0.5 is easy to get wrong, and the TAESD decoder's smallest latents)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from reference_nets import build
from safetensors_io import load_torch, save_safetensors

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "test" / "conformance"


def manifest(folder):
    """A manifest's cases, each with the folder its file names are relative to."""
    return [dict(case, dir=folder) for case in json.loads((folder / "manifest.json").read_text())["cases"]]


CASES = manifest(CONFORMANCE)
TAESD_CASES = manifest(CONFORMANCE / "taesd")


def factor_args(case):
    """The TAESD decoder's factor is always 8 and `net` takes none for it."""
    if case["kind"] == "taesd-decoder":
        return []
    return ["--factor", str(case["config"]["scale"] if case["kind"] == "interposer" else case["config"]["fac"])]


def in_channels(case):
    return case["config"].get("latent_channels", case["config"].get("ch_in", 4))


def close(got, expected):
    """The conformance README's rule: |got - expected| <= 1e-4 + 1e-4 * |expected|."""
    return bool(((got - expected).abs() <= 1e-4 + 1e-4 * expected.abs()).all())


def run_net(case, latent, tmp_path):
    source, result = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_safetensors(source, {"latent": latent})
    subprocess.run(
        ["node", str(REPO / "bin" / "latent-bridge.js"), "net", "--arch", case["kind"], "--weights", str(case["dir"] / case["weights"]),
         *factor_args(case), "--device", "cpu", str(source), str(result)],
        check=True, capture_output=True, timeout=120,
    )
    return load_torch(result)["latent"]


def check_against_pytorch(case, size, amplitude, tmp_path):
    generator = torch.Generator().manual_seed(size[0] * 100 + size[1])
    latent = torch.randn(2, in_channels(case), *size, generator=generator) * amplitude
    with torch.no_grad():
        expected = build(case, case["dir"] / case["weights"])(latent)
    got = run_net(case, latent, tmp_path)
    assert got.shape == expected.shape
    assert close(got, expected)


@pytest.mark.parametrize("case", CASES + TAESD_CASES, ids=[c["name"] for c in CASES + TAESD_CASES])
def test_the_pytorch_reference_reproduces_the_conformance_vectors(case):
    io = load_torch(case["dir"] / case["io"])
    with torch.no_grad():
        assert close(build(case, case["dir"] / case["weights"])(io["input"]), io["output"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("size", [(17, 23), (31, 9), (3, 3), (2, 3)])
def test_the_sidecar_matches_pytorch_at_odd_sizes_and_batches(case, size, tmp_path):
    check_against_pytorch(case, size, 1, tmp_path)


# Model-space latents reach |x| of 4 and more, where the decoder's tanh clamp bends.
@pytest.mark.parametrize("case", TAESD_CASES, ids=[c["name"] for c in TAESD_CASES])
@pytest.mark.parametrize("size", [(5, 7), (1, 1), (2, 9)])
def test_the_sidecar_decodes_as_pytorch_at_odd_sizes_and_batches(case, size, tmp_path):
    check_against_pytorch(case, size, 2, tmp_path)
