"""The webui's own TAESD decoders (models/VAE-taesd/*.pth) converted once for the sidecar."""

import json
import shutil
import subprocess

import numpy as np
import torch

from conftest import CONFORMANCE, REPO, SHIM, import_from_extension, wait_for
from modules import paths_internal
from safetensors_io import load_safetensors, load_torch, save_safetensors


def webui_pth(folder, name, case="taesd-decoder-4ch", dtype=torch.float32):
    """A decoder as the webui keeps it: torch.save of the state dict (the real ones are F32)."""
    state = {key: tensor.to(dtype) for key, tensor in load_torch(CONFORMANCE / "taesd" / f"{case}.weights.safetensors").items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / f"{name}.pth")
    return state


def test_converted_decoders_are_the_same_weights_and_run_in_the_sidecar(tmp_path):
    taesd_weights = import_from_extension("latent_bridge_shim.taesd_weights")
    source = tmp_path / "VAE-taesd"
    target = tmp_path / "sidecar-models"
    state = webui_pth(source, "taesd_decoder")
    webui_pth(source, "taef1_decoder", case="taesd-decoder-16ch", dtype=torch.float16)
    (source / "taesdxl_decoder.pth").write_bytes(b"not a pickle")
    written = taesd_weights.convert(source, target)
    assert sorted(p.name for p in written) == ["taef1_decoder.safetensors", "taesd_decoder.safetensors"]
    converted = load_safetensors(target / "taesd_decoder.safetensors")
    assert set(converted) == set(state)
    for key, tensor in state.items():
        assert np.array_equal(converted[key], tensor.numpy()), key
    header_length = int.from_bytes((target / "taef1_decoder.safetensors").read_bytes()[:8], "little")
    header = json.loads((target / "taef1_decoder.safetensors").read_bytes()[8 : 8 + header_length])
    assert header["1.weight"]["dtype"] == "F16"
    # The sidecar runs the converted file as it runs the reference weights.
    io = load_torch(CONFORMANCE / "taesd" / "taesd-decoder-4ch.io.safetensors")
    save_safetensors(tmp_path / "in.safetensors", {"input": io["input"]})
    subprocess.run(
        ["node", str(REPO / "bin" / "latent-bridge.js"), "net", "--arch", "taesd-decoder", "--weights", str(target / "taesd_decoder.safetensors"), "--device", "cpu", str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")],
        check=True, capture_output=True,
    )
    out = load_safetensors(tmp_path / "out.safetensors")["latent"]
    assert np.abs(out - io["output"].numpy()).max() <= 1e-4 + 1e-4 * np.abs(io["output"].numpy()).max()
    # Once there, a file is never converted or overwritten again.
    assert taesd_weights.convert(source, target) == []


def test_the_extension_converts_them_at_start_into_the_sidecars_models_folder(webui, extensions_dir, tmp_path, monkeypatch):
    sidecar = tmp_path / "sidecar"
    (sidecar / "bin").mkdir(parents=True)
    (sidecar / "bin" / "latent-bridge.js").write_text("")
    target = extensions_dir / "latent-bridge"
    target.unlink()
    shutil.copytree(SHIM, target, ignore=shutil.ignore_patterns("__pycache__", "sidecar.json"))
    (target / "sidecar.json").write_text(json.dumps({"sidecar": str(sidecar / "bin" / "latent-bridge.js")}))
    models = tmp_path / "webui-models"
    monkeypatch.setattr(paths_internal, "models_path", str(models))
    webui_pth(models / "VAE-taesd", "taesdxl_decoder")
    webui.start("--latent-bridge-autostart", "off")
    assert wait_for(lambda: (sidecar / "models" / "taesdxl_decoder.safetensors").is_file(), timeout=30)
