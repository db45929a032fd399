"""The sidecar's networks in PyTorch, to check what it returns through the shim and the CLI.

city96's interposer v4 (`InterposerModel`) and latent upscaler v2 (`LatentUpscaler`), and
madebyollin's TAESD decoder, rebuilt from the key layouts in test/conformance/README.md and checked
against its vectors (test_networks_reference.py). city96's networks work on raw VAE latents (the
webui holds model space, raw * scale); the TAESD decoder takes model-space latents as they are.
"""

import torch
from torch import nn

from safetensors_io import load_torch

# Model space = raw * scale for the families the tests convert (no shift for v1/xl).
SCALE = {"v1": 0.18215, "xl": 0.13025}


class _Extract(nn.Module):
    def __init__(self, ch_in, ch_out):
        super().__init__()
        self.join = nn.ReLU()
        self.short = nn.Conv2d(ch_in, ch_out, 3, padding=1)
        self.long = nn.Sequential(nn.Conv2d(ch_in, ch_out, 3, padding=1), nn.SiLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1), nn.SiLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1), nn.Dropout(0.1))

    def forward(self, x):
        return self.join(self.long(x) + self.short(x))


class _Res(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.join = nn.ReLU()
        self.norm = nn.BatchNorm2d(ch)
        self.long = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.Dropout(0.1))

    def forward(self, x):
        x = self.norm(x)
        return self.join(self.long(x) + x)


class Interposer(nn.Module):
    def __init__(self, ch_in=4, ch_out=4, ch_mid=64, scale=1.0, blocks=12):
        super().__init__()
        self.head = _Extract(ch_in, ch_mid)
        self.core = nn.Sequential(nn.Upsample(scale_factor=scale, mode="nearest"), *[_Res(ch_mid) for _ in range(blocks)], nn.BatchNorm2d(ch_mid), nn.SiLU())
        self.tail = nn.Conv2d(ch_mid, ch_out, 3, padding=1)

    def forward(self, x):
        return self.tail(self.core(self.head(x)))


class Upscaler(nn.Module):
    def __init__(self, fac, depth=16):
        super().__init__()
        layers = [nn.Conv2d(4, 64, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=fac, mode="nearest"), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(64, 4, 3, padding=1))
        self.sequential = nn.Sequential(*layers)

    def forward(self, x):
        return self.sequential(x)


class _TanhClamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """relu(conv.4(relu(conv.2(relu(conv.0(x))))) + x): every decoder Block is 64->64, so the skip is the identity."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_decoder(latent_channels=4):
    """A bare nn.Sequential, as in taesd.py, so the state dict keys have no prefix (`1.weight`, `3.conv.0.weight`, ...)."""
    layers = [_TanhClamp(), nn.Conv2d(latent_channels, 64, 3, padding=1), nn.ReLU()]
    for _ in range(3):
        layers += [_Block(64), _Block(64), _Block(64), nn.Upsample(scale_factor=2), nn.Conv2d(64, 64, 3, padding=1, bias=False)]
    layers += [_Block(64), nn.Conv2d(64, 3, 3, padding=1)]
    return nn.Sequential(*layers)


_BUILDERS = {"interposer": Interposer, "upscaler": Upscaler, "taesd-decoder": taesd_decoder}


def build(case, weights_path):
    """The network of one conformance manifest case, with its weights, in eval mode."""
    net = _BUILDERS[case["kind"]](**case["config"])
    net.load_state_dict(load_torch(weights_path))
    return net.eval()
