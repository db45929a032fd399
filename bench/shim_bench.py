"""Benchmark of the webui extension (python-shim) in the stand-in webui against the real sidecar.

1. Preview hook: time the sampler thread spends in `store_latent` per step for a 1x4x128x128
   x0, with the extension's wrapper (queues the step for the sidecar's viewer) next to the
   webui's own `store_latent`, interleaved round by round. Between steps the "sampler" sleeps
   10 ms, as a GPU step would leave the CPU free.
2. Hires hook: the whole conversion as the sampler thread sees it (encode, request, wait,
   decode, checks) for an xl->v1 interpose + x1.5 NN upscale of a 1x4x64x64 latent, next to
   the sidecar's own time for that request (its /metrics latency sum for `hires`).
3. The preview hook again with "Latent bridge (TAESD)" as the live preview method (each step
   then also asks for TAESD pictures): the sampler thread must not pay for them.
4. From a step's `store_latent` to its TAESD picture in a viewer (a watching client), for a
   1x4x64x64 latent on the sidecar's CPU, next to the same step's linear preview.

Prints one JSON line: {"cases": [{"name", "ms", "baseline_ms"}, ...]}.
Usage: python3 bench/shim_bench.py [--rounds N]
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "test" / "python" / "shim" / "standin_webui"
CONFORMANCE = REPO / "test" / "conformance"
MODEL_FILES = {
    "interposer-xl-to-v1.weights.safetensors": "xl-to-v1_interposer-v4.0.safetensors",
    "upscaler-x1.5.weights.safetensors": "latent-upscaler-v2.1_SDv1-x1.5.safetensors",
    # Random weights of the real TAESD layout: the same work as the real decoder.
    "taesd/taesd-decoder-4ch.weights.safetensors": "taesd_decoder.safetensors",
}
TAESD_SAMPLES = 3
PREVIEW_STEPS = 60
HIRES_RUNS = 3
STEP_GAP = 0.010

sys.path.insert(0, str(STANDIN))
sys.path.insert(0, str(REPO / "test" / "python" / "shim"))

import torch  # noqa: E402

import checkpoints  # noqa: E402
import webui  # noqa: E402
from modules import patches, processing, sd_models, sd_samplers_common, shared  # noqa: E402


def start_sidecar(models):
    command = ["node", str(REPO / "bin" / "latent-bridge.js"), "serve", "--port", "0", "--models", str(models), "--offline", "--threads", "2"]
    process = subprocess.Popen(command, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = process.stdout.readline().strip()
    if not first.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the sidecar did not start: {first}")
    return process, first[len("listening on "):]


def hires_seconds(http_url):
    """The sidecar's total time and count of `hires` requests, from /metrics."""
    text = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{http_url}/metrics", timeout=5).read().decode()
    total = re.search(r'latent_bridge_request_duration_seconds_sum\{op="hires"\} ([0-9.e+-]+)', text)
    count = re.search(r'latent_bridge_request_duration_seconds_count\{op="hires"\} ([0-9]+)', text)
    return (float(total.group(1)), int(count.group(1))) if total and count else (0.0, 0)


def bench_preview_hook(rounds, method):
    shared.opts.data["show_progress_type"] = method
    ours = sd_samplers_common.store_latent
    stock = patches.original("latent_bridge", sd_samplers_common, "store_latent")
    shared.state.begin(job="bench")
    shared.state.sampling_steps = PREVIEW_STEPS
    latents = [torch.randn(1, 4, 128, 128) for _ in range(8)]
    times = {"ours": [], "stock": []}
    for _ in range(rounds):
        for name, function in (("stock", stock), ("ours", ours)):
            shared.state.job_no += 1
            for step in range(PREVIEW_STEPS):
                shared.state.sampling_step = step
                latent = latents[step % len(latents)].clone()
                start = time.perf_counter()
                function(latent)
                times[name].append((time.perf_counter() - start) * 1000)
                time.sleep(STEP_GAP)
    return {"name": f"shim: sampler-thread time in the preview hook per step, 1x4x128x128, {method} previews", "ms": statistics.median(times["ours"]), "baseline_ms": statistics.median(times["stock"])}


def bench_taesd_latency(rounds, ws_url):
    """Seconds from store_latent to the viewer's TAESD picture of that step, and to its linear one."""
    import msgpack
    import websocket

    shared.opts.data["show_progress_type"] = "Latent bridge (TAESD)"
    viewer = websocket.create_connection(ws_url, timeout=60)
    viewer.send_binary(msgpack.packb({"id": 1, "op": "watch"}, use_bin_type=True))
    msgpack.unpackb(viewer.recv(), raw=False)
    shared.state.begin(job="taesd bench")
    shared.state.sampling_steps = 1000
    taesd, linear = [], []
    for sample in range(rounds * TAESD_SAMPLES + 1):
        shared.state.sampling_step = sample
        latent = torch.randn(1, 4, 64, 64) * 2
        start = time.perf_counter()
        sd_samplers_common.store_latent(latent)
        got = {}
        while "taesd" not in got:
            event = msgpack.unpackb(viewer.recv(), raw=False)
            if event.get("event") == "preview" and "preview" not in got:
                got["preview"] = time.perf_counter()
            elif event.get("event") == "taesd":
                got["taesd"] = time.perf_counter()
        if sample > 0:  # the first one also loads the decoder
            taesd.append((got["taesd"] - start) * 1000)
            linear.append((got["preview"] - start) * 1000)
    viewer.close()
    return {"name": "shim: store_latent to its TAESD picture in a viewer, 1x4x64x64 on CPU, vs its linear preview", "ms": statistics.median(taesd), "baseline_ms": statistics.median(linear)}


def bench_hires_hook(rounds, http_url):
    from latent_bridge_shim import hires

    shared.opts.data["sd_model_checkpoint"] = "sd15"
    sd_models.reload_model_weights()
    p = processing.StableDiffusionProcessingTxt2Img(enable_hr=True, width=512, height=512, hr_scale=1.5, hr_upscaler=hires.MODE_NAME)
    p.init()
    setattr(p, "latent_bridge_first_pass_family", "xl")
    samples = torch.randn(1, 4, 64, 64)
    hook, sidecar = [], []
    hires._bridge(p, samples)  # warm-up: the sidecar builds and loads both networks
    for _ in range(rounds * HIRES_RUNS):
        before = hires_seconds(http_url)
        start = time.perf_counter()
        result = hires._bridge(p, samples)
        hook.append((time.perf_counter() - start) * 1000)
        after = hires_seconds(http_url)
        assert result is not None and result[0].shape == (1, 4, 96, 96), "the sidecar did not convert"
        assert after[1] == before[1] + 1
        sidecar.append((after[0] - before[0]) * 1000)
    return {"name": "shim: hires hook total vs sidecar compute, xl->v1 + x1.5, 1x4x64x64", "ms": statistics.median(hook), "baseline_ms": statistics.median(sidecar)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    work = Path(tempfile.mkdtemp(prefix="shim-bench-"))
    process = None
    try:
        models = work / "models"
        models.mkdir()
        for source, name in MODEL_FILES.items():
            shutil.copyfile(CONFORMANCE / source, models / name)
        process, http_url = start_sidecar(models)
        extensions = work / "extensions"
        extensions.mkdir()
        (extensions / "latent-bridge").symlink_to(REPO / "python-shim", target_is_directory=True)
        sd_models.checkpoints_list["sd15"] = sd_models.CheckpointInfo("sd15", checkpoints.sd15)
        webui.initialize(str(extensions), ["--latent-bridge-url", http_url.replace("http://", "ws://") + "/ws", "--latent-bridge-autostart", "off"])
        shared.opts.data["sd_model_checkpoint"] = "sd15"
        sd_models.reload_model_weights()
        from latent_bridge_shim import sidecar

        sidecar.client().request("hello", {"protocol": 2}, 10)  # connected before timing
        cases = [
            bench_preview_hook(rounds, "Latent bridge"),
            bench_hires_hook(rounds, http_url),
            bench_preview_hook(rounds, "Latent bridge (TAESD)"),
            bench_taesd_latency(rounds, http_url.replace("http://", "ws://") + "/ws"),
        ]
        print(json.dumps({"cases": cases}))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
