"""The sidecar's networks against city96's architectures written in PyTorch, through the real
`latent-bridge net` command: the conformance vectors first (which pins the PyTorch reference),
then sizes and batches the vectors do not cover (odd sizes, where nearest resizing by 1.25, 1.5
and 0.5 is easy to get wrong)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from reference_nets import build
from safetensors_io import load_torch, save_safetensors

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "test" / "conformance"
CASES = json.loads((CONFORMANCE / "manifest.json").read_text())["cases"]


def factor(case):
    return case["config"]["scale"] if case["kind"] == "interposer" else case["config"]["fac"]


def close(got, expected):
    """The conformance README's rule: |got - expected| <= 1e-4 + 1e-4 * |expected|."""
    return bool(((got - expected).abs() <= 1e-4 + 1e-4 * expected.abs()).all())


def run_net(case, latent, tmp_path):
    source, result = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_safetensors(source, {"latent": latent})
    subprocess.run(
        ["node", str(REPO / "bin" / "latent-bridge.js"), "net", "--arch", case["kind"], "--weights", str(CONFORMANCE / case["weights"]),
         "--factor", str(factor(case)), "--device", "cpu", str(source), str(result)],
        check=True, capture_output=True, timeout=120,
    )
    return load_torch(result)["latent"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_pytorch_reference_reproduces_the_conformance_vectors(case):
    io = load_torch(CONFORMANCE / case["io"])
    with torch.no_grad():
        assert close(build(case, CONFORMANCE / case["weights"])(io["input"]), io["output"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("size", [(17, 23), (31, 9), (3, 3), (2, 3)])
def test_the_sidecar_matches_pytorch_at_odd_sizes_and_batches(case, size, tmp_path):
    generator = torch.Generator().manual_seed(size[0] * 100 + size[1])
    latent = torch.randn(2, case["config"].get("ch_in", 4), *size, generator=generator)
    with torch.no_grad():
        expected = build(case, CONFORMANCE / case["weights"])(latent)
    got = run_net(case, latent, tmp_path)
    assert got.shape == expected.shape
    assert close(got, expected)
