"""Torch tensors to and from the sidecar's wire form {dtype, shape, data}.

Latents travel exactly as the webui holds them (model space, little-endian bytes) and come
back in the dtype that was sent; the caller's device and dtype are restored here.
"""

import numpy as np
import torch

# numpy has no bfloat16, so bfloat16 travels as its raw 16-bit patterns.
_WIRE_DTYPES = {
    torch.float32: ("float32", np.dtype("<f4")),
    torch.float16: ("float16", np.dtype("<f2")),
    torch.bfloat16: ("bfloat16", np.dtype("<i2")),
}
_BY_NAME = {name: (torch_dtype, np_dtype) for torch_dtype, (name, np_dtype) in _WIRE_DTYPES.items()}


class WireError(ValueError):
    """The sidecar sent a tensor that does not decode, or not the one that was asked for."""


def encode(tensor):
    """A latent as a wire tensor; dtypes the sidecar does not take (float64) travel as float32."""
    tensor = tensor.detach()
    if tensor.dtype not in _WIRE_DTYPES:
        tensor = tensor.float()
    name, np_dtype = _WIRE_DTYPES[tensor.dtype]
    cpu = tensor.to("cpu").contiguous()
    if cpu.dtype is torch.bfloat16:
        cpu = cpu.view(torch.int16)
    array = cpu.numpy()
    # A no-op on little-endian machines, which is every machine the webui runs on.
    array = array.astype(np_dtype, copy=False)
    return {"dtype": name, "shape": list(tensor.shape), "data": array.tobytes()}


def decode(message, like):
    """A wire tensor as a torch tensor on the device and in the dtype of `like`."""
    try:
        name = message["dtype"]
        shape = [int(n) for n in message["shape"]]
        data = message["data"]
        torch_dtype, np_dtype = _BY_NAME[name]
    except (KeyError, TypeError, ValueError) as error:
        raise WireError(f"the sidecar sent a malformed tensor ({error!r})") from error
    count = 1
    for n in shape:
        count *= n
    if not isinstance(data, (bytes, bytearray)) or len(data) != count * np_dtype.itemsize:
        raise WireError(f"the sidecar sent {len(data) if isinstance(data, (bytes, bytearray)) else type(data).__name__} bytes for a {name} tensor of shape {shape}")
    # Copy into native order: frombuffer over the message bytes would be read-only.
    array = np.frombuffer(data, dtype=np_dtype).astype(np_dtype.newbyteorder("="), copy=True).reshape(shape)
    tensor = torch.from_numpy(array)
    if torch_dtype is torch.bfloat16:
        tensor = tensor.view(torch.bfloat16)
    return tensor.to(device=like.device, dtype=like.dtype)
