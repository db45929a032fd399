"""Reading and writing .safetensors with numpy, for tests that talk to the sidecar through files:
a u64 little-endian header length, a JSON header, then the raw little-endian tensor bytes."""

import json
import struct

import numpy as np
import torch

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_safetensors(path):
    """All tensors of a file as numpy arrays (BF16 is not needed by the tests)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        body = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.copy()
    return tensors


def load_torch(path):
    """All tensors of a file as torch tensors."""
    return {name: torch.from_numpy(array) for name, array in load_safetensors(path).items()}


def save_safetensors(path, tensors):
    """Writes torch tensors as float32, header padded to 8 bytes as other writers do."""
    header, chunks, offset = {}, [], 0
    for name, tensor in tensors.items():
        data = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header)
    text += " " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(chunks))
