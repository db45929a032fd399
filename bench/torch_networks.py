"""PyTorch eager CPU baseline for `npm run bench`: the interposer v4 and upscaler v2 networks,
defined from their published architecture and run the way the original ComfyUI nodes run them
(fp32, NCHW, eval mode, no grad). Speaks JSON lines on stdin/stdout so the Node side can
interleave its own measurements with these in one run.
"""
import json
import statistics
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[8 + length + begin:8 + length + end]
        array = np.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def conv(channels_in, channels_out):
    return nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=1, padding=1)


class ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.join = nn.ReLU()
        self.norm = nn.BatchNorm2d(channels)
        self.long = nn.Sequential(conv(channels, channels), nn.SiLU(), conv(channels, channels), nn.SiLU(), conv(channels, channels), nn.Dropout(0.1))

    def forward(self, x):
        x = self.norm(x)
        return self.join(self.long(x) + x)


class ExtractBlock(nn.Module):
    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.join = nn.ReLU()
        self.short = conv(channels_in, channels_out)
        self.long = nn.Sequential(conv(channels_in, channels_out), nn.SiLU(), conv(channels_out, channels_out), nn.SiLU(), conv(channels_out, channels_out), nn.Dropout(0.1))

    def forward(self, x):
        return self.join(self.long(x) + self.short(x))


class Interposer(nn.Module):
    def __init__(self, ch_in, ch_out, ch_mid, scale, blocks):
        super().__init__()
        self.head = ExtractBlock(ch_in, ch_mid)
        self.core = nn.Sequential(nn.Upsample(scale_factor=scale, mode="nearest"), *[ResBlock(ch_mid) for _ in range(blocks)], nn.BatchNorm2d(ch_mid), nn.SiLU())
        self.tail = conv(ch_mid, ch_out)

    def forward(self, x):
        return self.tail(self.core(self.head(x)))


class Upscaler(nn.Module):
    def __init__(self, factor, depth, channels=4, size=64):
        super().__init__()
        layers = [conv(channels, size), nn.ReLU(), nn.Upsample(scale_factor=factor, mode="nearest"), nn.ReLU()]
        for _ in range(depth):
            layers += [conv(size, size), nn.ReLU()]
        layers.append(conv(size, channels))
        self.sequential = nn.Sequential(*layers)

    def forward(self, x):
        return self.sequential(x)


def build(spec):
    config = spec["config"]
    if spec["kind"] == "interposer":
        model = Interposer(config["ch_in"], config["ch_out"], config["ch_mid"], config["scale"], config["blocks"])
    else:
        model = Upscaler(config["fac"], config["depth"])
    model.load_state_dict(read_safetensors(spec["weights"]))
    return model.eval()


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "load":
            models[request["name"]] = build(request)
            reply = {"ok": True}
        else:
            model = models[request["name"]]
            x = torch.from_numpy(np.frombuffer(bytes.fromhex(request["input"]), dtype=np.float32).reshape(request["shape"]).copy())
            times = []
            with torch.no_grad():
                for _ in range(request["warmup"]):
                    model(x)
                for _ in range(request["runs"]):
                    start = time.perf_counter()
                    out = model(x)
                    times.append((time.perf_counter() - start) * 1000)
            reply = {"ms": statistics.median(times), "checksum": float(out.double().sum())}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
