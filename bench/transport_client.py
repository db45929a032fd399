"""Times protocol round trips from Python, as the webui extension makes them (msgpack +
websocket-client). Reads one JSON command per line on stdin, answers one JSON line:
  {"op": "preview" | "upscale", "runs": N, "warmup": N, "seed": N} -> {"ms": median, "checksum": float}"""

import json
import statistics
import sys
import time

import msgpack
import numpy as np
import websocket


def main():
    port = int(sys.argv[1])
    ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % port)
    ws.send_binary(msgpack.packb({"id": 0, "op": "hello", "protocol": 2, "client": "transport bench"}, use_bin_type=True))
    assert msgpack.unpackb(ws.recv(), raw=False)["ok"]
    next_id = 1
    for line in sys.stdin:
        command = json.loads(line)
        x = np.random.default_rng(command["seed"]).standard_normal((1, 4, 128, 128)).astype("<f4") * 0.18215
        latent = {"dtype": "float32", "shape": [1, 4, 128, 128], "data": x.tobytes()}
        if command["op"] == "preview":
            base = {"op": "preview", "family": "v1", "latent": latent}
        else:
            base = {"op": "upscale", "family": "v1", "scale": 2.0, "latent": latent}
        times = []
        checksum = 0.0
        for i in range(command["warmup"] + command["runs"]):
            request = dict(base, id=next_id)
            if command["op"] == "preview":
                # A distinct job per request, so no preview supersedes another.
                request["job"] = "bench-%d" % next_id
            next_id += 1
            start = time.perf_counter()
            ws.send_binary(msgpack.packb(request, use_bin_type=True))
            reply = msgpack.unpackb(ws.recv(), raw=False)
            if command["op"] == "preview":
                out = np.frombuffer(reply["image"]["data"], np.uint8)
            else:
                out = np.frombuffer(reply["latent"]["data"], "<f4")
            elapsed = (time.perf_counter() - start) * 1000
            assert reply["ok"] and reply["id"] == request["id"], reply
            if i >= command["warmup"]:
                times.append(elapsed)
            checksum = float(out.astype(np.float64).sum())
        print(json.dumps({"ms": statistics.median(times), "checksum": checksum}), flush=True)


if __name__ == "__main__":
    main()
