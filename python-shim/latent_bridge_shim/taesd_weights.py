"""The webui's own TAESD decoders, for the sidecar.

The webui keeps them as `models/VAE-taesd/<name>_decoder.pth`: torch pickles, which the sidecar
(Node.js) cannot read. The extension has torch, so it converts each one once into
`<name>_decoder.safetensors` in the sidecar's own `models/` folder, where the sidecar looks first:
a user who already has them needs no download. A file already there is never overwritten.
"""

import json
import logging
import os
import struct
import threading
from pathlib import Path

import torch

from . import location

logger = logging.getLogger("latent_bridge")

# The webui's file names (A1111 picks taesd/taesdxl/taesd3, Forge adds taef1), as the sidecar's registry names them.
DECODERS = ("taesd_decoder", "taesdxl_decoder", "taesd3_decoder", "taef1_decoder")

# safetensors dtype names of the tensors these files hold.
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def convert_in_background(webui_models_dir):
    """Converts what is there without holding up the webui's start."""
    threading.Thread(target=convert, args=(Path(webui_models_dir) / "VAE-taesd",), name="latent-bridge TAESD weights", daemon=True).start()


def convert(source_dir, target_dir=None):
    """Writes `<name>.safetensors` into the sidecar's models folder for each `<name>.pth` in
    `source_dir` it does not have yet; returns the files written. Never raises: a file that cannot
    be converted is logged and skipped (the sidecar can still download its own)."""
    target_dir = Path(target_dir) if target_dir is not None else location.sidecar_models_dir()
    written = []
    if target_dir is None or not Path(source_dir).is_dir():
        return written
    for name in DECODERS:
        source = Path(source_dir) / f"{name}.pth"
        target = target_dir / f"{name}.safetensors"
        if not source.is_file() or target.exists():
            continue
        try:
            _write_safetensors(target, _state_dict(source))
        except Exception as error:  # a broken or foreign file must not cost the webui anything
            logger.warning("latent-bridge: could not convert %s for the sidecar (%s); it can download its own", source, error)
            continue
        logger.info("latent-bridge: converted %s into %s for the sidecar", source, target)
        written.append(target)
    return written


def _state_dict(path):
    """The decoder's tensors, loaded as data only (no code from the pickle runs)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "1.weight" not in state or not all(torch.is_tensor(t) for t in state.values()):
        raise ValueError("not a TAESD decoder state dict (no 1.weight)")
    return state


def _write_safetensors(path, tensors):
    """The safetensors format (u64 header length, JSON header, raw little-endian data), written
    beside the target and renamed into place, so the sidecar never sees half a file."""
    header, chunks, offset = {}, [], 0
    for name, tensor in tensors.items():
        dtype = _DTYPES.get(tensor.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name} is {tensor.dtype}")
        data = tensor.detach().contiguous().cpu()
        raw = (data.view(torch.int16) if tensor.dtype is torch.bfloat16 else data).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(chunks))
    os.replace(partial, path)
