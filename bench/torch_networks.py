"""PyTorch eager CPU baseline for `npm run bench`: the interposer v4, upscaler v2 and TAESD decoder
networks (test/python/reference_nets.py), run the way the original ComfyUI nodes and the webui run
them (fp32, NCHW, eval mode, no grad). Speaks JSON lines on stdin/stdout so the Node side can interleave its own
measurements with these in one run.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

# The same PyTorch networks the tests hold the sidecar to.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "python"))
import reference_nets  # noqa: E402


def build(request):
    case = {"kind": request["kind"], "config": request["config"]}
    return reference_nets.build(case, request["weights"])


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
