"""A client of the sidecar written from docs/protocol.md alone, with Debian's python3-msgpack
and python3-websocket: every op, the dtypes, the errors and the access rules, against the real
`latent-bridge serve` started as a subprocess."""

import os
import shutil
import signal
import subprocess
import tempfile

import msgpack
import numpy as np
import pytest
import websocket

from safetensors_io import load_safetensors

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFORMANCE = os.path.join(REPO, "test", "conformance")
# The conformance networks stand in for the real weights, under the file names the sidecar looks for.
STAND_INS = {
    "latent-upscaler-v2.1_SDv1-x2.0.safetensors": "upscaler-x2.0",
    "latent-upscaler-v2.1_SDv1-x1.5.safetensors": "upscaler-x1.5",
    "xl-to-v1_interposer-v4.0.safetensors": "interposer-xl-to-v1",
}
V1_SCALE = 0.18215
# ComfyUI's SD1.5 latent->RGB factors, one [R, G, B] row per channel; no bias.
V1_RGB = np.array(
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
)


def start_sidecar(*extra):
    work = tempfile.mkdtemp(prefix="latent-bridge-pytest-")
    models = os.path.join(work, "models")
    os.mkdir(models)
    for file_name, case in STAND_INS.items():
        shutil.copy(os.path.join(CONFORMANCE, case + ".weights.safetensors"), os.path.join(models, file_name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENT_BRIDGE_")}
    env.update(HF_HOME=os.path.join(work, "hf"), XDG_STATE_HOME=os.path.join(work, "state"), HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        ["node", "bin/latent-bridge.js", "serve", "--port", "0", "--models", models, "--offline", "--device", "cpu", *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = process.stdout.readline()
    if not first.startswith("listening on http://"):
        process.kill()
        raise RuntimeError("sidecar did not start: " + first + process.stderr.read())
    port = int(first.strip().rsplit(":", 1)[1])
    return process, port, work


def stop_sidecar(process, work):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def sidecar():
    process, port, work = start_sidecar()
    yield port
    stop_sidecar(process, work)


@pytest.fixture(scope="module")
def secured_sidecar():
    process, port, work = start_sidecar("--token", "py-token")
    yield port
    stop_sidecar(process, work)


class Client:
    """docs/protocol.md §9: msgpack maps in binary frames, replies matched by id."""

    def __init__(self, port, **options):
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/ws" % port, timeout=60, **options)
        self.next_id = 1
        self.other = []

    def send(self, request):
        self.ws.send_binary(msgpack.packb(request, use_bin_type=True))

    def receive(self):
        opcode, data = self.ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        return msgpack.unpackb(data, raw=False)

    def call(self, op, **fields):
        request = dict(fields, op=op, id=fields.get("id", self.next_id))
        self.next_id += 1
        self.send(request)
        while True:
            reply = self.receive()
            if reply.get("id") == request["id"]:
                return reply
            self.other.append(reply)

    def close(self):
        self.ws.close()


@pytest.fixture
def client(sidecar):
    c = Client(sidecar)
    yield c
    c.close()


def tensor(x, dtype="float32"):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "float32":
        data = x.astype("<f4").tobytes()
    elif dtype == "float16":
        data = x.astype("<f2").tobytes()
    else:
        bits = x.view("<u4").astype("<u8")
        data = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
    return {"dtype": dtype, "shape": list(x.shape), "data": data}


def values(t):
    if t["dtype"] == "float32":
        out = np.frombuffer(t["data"], "<f4")
    elif t["dtype"] == "float16":
        out = np.frombuffer(t["data"], "<f2").astype(np.float32)
    else:
        out = (np.frombuffer(t["data"], "<u2").astype("<u4") << 16).view("<f4")
    return out.reshape(t["shape"])


def latent(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_hello(client):
    reply = client.call("hello", protocol=2, client="pytest")
    assert reply["ok"] is True
    assert reply["protocol"] == 2 and reply["server"] == "latent-bridge"
    assert reply["device"] == "cpu"
    assert [(f["name"], f["channels"], f["downscale"]) for f in reply["families"]] == [("v1", 4, 8), ("xl", 4, 8), ("v3", 16, 8), ("fx", 16, 8), ("ca", 4, 4)]
    assert all(isinstance(f["label"], str) and f["label"] for f in reply["families"])
    assert {"upscale", "interpose", "hires", "preview", "models"} <= set(reply["ops"])
    assert reply["limits"]["max_jobs_per_client"] >= 1


def test_string_ids_are_echoed(client):
    assert client.call("hello", protocol=2, id="abc")["id"] == "abc"


def test_models_says_what_is_present_and_missing(client):
    models = {m["name"]: m for m in client.call("models")["models"]}
    assert models["upscaler-v1-x2.0"]["present"] is True
    assert models["upscaler-xl-x2.0"]["present"] is False
    assert models["upscaler-xl-x2.0"]["reason"]


def test_upscale_matches_the_reference_network(client):
    io = load_safetensors(os.path.join(CONFORMANCE, "upscaler-x2.0.io.safetensors"))
    reply = client.call("upscale", family="v1", scale=2.0, latent=tensor(io["input"] * V1_SCALE))
    assert reply["ok"], reply
    assert reply["plan"]["steps"] == [{"kind": "upscale", "network": "upscaler-v1-x2.0", "from": "v1", "to": "v1", "in": [24, 24], "out": [48, 48]}]
    got = values(reply["latent"]) / V1_SCALE
    expected = io["output"]
    assert got.shape == expected.shape
    assert np.all(np.abs(got - expected) <= 1e-4 + 1e-4 * np.abs(expected))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_replies_in_the_dtype_sent(client, dtype):
    x = latent((2, 4, 8, 8), 1) * V1_SCALE
    reply = client.call("upscale", family="sd15", size=[12, 12], latent=tensor(x, dtype))
    assert reply["ok"], reply
    assert reply["latent"]["dtype"] == dtype
    assert reply["latent"]["shape"] == [2, 4, 12, 12]
    assert len(reply["latent"]["data"]) == 2 * 4 * 12 * 12 * 2
    reference = client.call("upscale", family="v1", size=[12, 12], latent=tensor(values(tensor(x, dtype))))
    assert np.allclose(values(reply["latent"]), values(reference["latent"]), rtol=1e-2, atol=1e-2)


def test_interpose(client):
    reply = client.call("interpose", **{"from": "xl"}, to="v1", latent=tensor(latent((1, 4, 16, 16), 2) * 0.13025))
    assert reply["ok"], reply
    assert reply["latent"]["shape"] == [1, 4, 16, 16]
    assert np.all(np.isfinite(values(reply["latent"])))


def test_hires_in_one_round_trip(client):
    reply = client.call("hires", **{"from": "xl"}, to="v1", size=[32, 32], latent=tensor(latent((1, 4, 16, 16), 3) * 0.13025))
    assert reply["ok"], reply
    plan = reply["plan"]
    assert (plan["from"], plan["to"], plan["source"], plan["target"], plan["warnings"]) == ("xl", "v1", [16, 16], [32, 32], [])
    assert [(step["kind"], step["network"], step["in"], step["out"]) for step in plan["steps"]] == [
        ("interpose", "interposer-xl-to-v1", [16, 16], [16, 16]),
        ("upscale", "upscaler-v1-x2.0", [16, 16], [32, 32]),
    ]
    assert reply["latent"]["shape"] == [1, 4, 32, 32]


def test_preview_follows_the_documented_formula(client):
    x = latent((2, 4, 6, 10), 4)
    reply = client.call("preview", family="v1", job="py", step=1, total=2, index=1, latent=tensor(x))
    image = reply["image"]
    assert (image["width"], image["height"]) == (10, 6)
    rgb = np.frombuffer(image["data"], np.uint8).reshape(6, 10, 3).astype(int)
    expected = np.round(np.clip((np.einsum("chw,cj->hwj", x[1].astype(np.float64), V1_RGB) + 1) / 2, 0, 1) * 255)
    assert np.abs(rgb - expected).max() <= 1
    grid = client.call("preview", family="v1", grid=True, latent=tensor(x))["image"]
    assert (grid["width"], grid["height"]) == (20, 6)


def test_noreply_preview_answers_only_errors(client):
    x = tensor(latent((1, 4, 8, 8), 5))
    client.send({"id": "silent", "op": "preview", "family": "v1", "noreply": True, "latent": x})
    client.send({"id": "loud", "op": "preview", "family": "v3", "noreply": True, "latent": x})
    reply = client.call("hello", protocol=2)
    assert reply["ok"]
    ids = [m.get("id") for m in client.other]
    assert "silent" not in ids
    assert client.other[ids.index("loud")]["error"]["code"] == "bad_tensor"


@pytest.mark.parametrize(
    "request_fields, code",
    [
        ({"op": "upscale", "family": "sd9", "scale": 2.0}, "unknown_family"),
        ({"op": "interpose", "from": "v1", "to": "fx"}, "unsupported_direction"),
        ({"op": "upscale", "family": "xl", "scale": 2.0}, "model_unavailable"),
        ({"op": "upscale", "family": "v1", "scale": 2.0, "lie": True}, "bad_tensor"),
        ({"op": "upscale", "family": "v1"}, "bad_request"),
        ({"op": "teleport"}, "bad_request"),
        ({"op": "hello", "protocol": 1}, "bad_request"),
    ],
)
def test_error_replies(client, request_fields, code):
    x = tensor(latent((1, 4, 8, 8), 6) * V1_SCALE)
    if request_fields.pop("lie", False):
        x["shape"] = [1, 4, 8, 9]
    reply = client.call(request_fields.pop("op"), latent=x, **request_fields)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]


def test_unreadable_frames_get_an_error_with_nil_id(client):
    client.ws.send_binary(b"\xc1\xc1")
    reply = client.receive()
    assert reply["id"] is None and reply["error"]["code"] == "bad_request"
    client.ws.send('{"op": "hello"}')
    assert client.receive()["error"]["code"] == "bad_request"
    assert client.call("hello", protocol=2)["ok"]


def test_cross_origin_upgrade_is_refused(sidecar):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(sidecar, origin="https://evil.example")
    assert refused.value.status_code == 403


def test_token_is_required_when_set(secured_sidecar):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(secured_sidecar)
    assert refused.value.status_code == 401
    client = Client(secured_sidecar, header=["Authorization: Bearer py-token"])
    assert client.call("hello", protocol=2)["ok"]
    client.close()
