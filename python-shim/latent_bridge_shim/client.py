"""The WebSocket connection to the sidecar: msgpack frames, replies matched by id.

One connection serves every thread of the webui: the sampler thread (hires fix), the HTTP
threads (live preview decodes) and a sender thread that delivers per-step previews, so that
the sampler never waits on the network. The connection is made on first use and made again
after it breaks; while the sidecar stays unreachable, attempts are spaced out so that each
caller learns it at once instead of waiting for a connect timeout.
"""

import itertools
import queue
import select
import threading
import time

import msgpack
import numpy as np
import websocket

PROTOCOL = 2

# Seconds to wait for the TCP and WebSocket handshakes.
CONNECT_TIMEOUT = 3.0
# Seconds a send (or the rest of a frame being read) may stall before the connection counts as broken.
IO_TIMEOUT = 10.0
# Pause before reconnecting after consecutive failures: doubles from the first to the last value.
RETRY_FIRST_DELAY = 0.25
RETRY_MAX_DELAY = 4.0
# Previews waiting for the sender thread; older steps are dropped beyond this (the sampler never blocks).
POST_QUEUE_SIZE = 32


class SidecarUnavailable(Exception):
    """The sidecar cannot be reached: not running, refused, or the connection broke."""


class SidecarTimeout(Exception):
    """The sidecar did not answer in time."""


class SidecarError(Exception):
    """The sidecar answered with an error."""

    def __init__(self, code, message):
        super().__init__(f"{message} [{code}]")
        self.code = code


def _xor_mask(mask_key, data):
    """RFC 6455 masking with numpy: websocket-client's pure-Python loop costs ~2.6 ms per MiB."""
    key = np.frombuffer(mask_key, dtype=np.uint8)
    payload = np.frombuffer(data, dtype=np.uint8)
    masked = np.empty_like(payload)
    whole = len(payload) // 4 * 4
    np.bitwise_xor(payload[:whole].view(np.uint32), key.view(np.uint32)[0], out=masked[:whole].view(np.uint32))
    np.bitwise_xor(payload[whole:], key[: len(payload) - whole], out=masked[whole:])
    return masked.tobytes()


class _Frame(websocket.ABNF):
    """A binary client frame masked with numpy (only this client's frames; the library is left alone)."""

    def __init__(self, payload):
        super().__init__(fin=1, opcode=websocket.ABNF.OPCODE_BINARY, mask=1, data=payload)

    def _get_masked(self, mask_key):
        if isinstance(mask_key, str):
            mask_key = mask_key.encode("latin-1")
        return mask_key + _xor_mask(mask_key, self.data)


class _Waiter:
    """One request's reply slot."""

    __slots__ = ("event", "reply", "failure")

    def __init__(self):
        self.event = threading.Event()
        self.reply = None
        self.failure = None


class SidecarClient:
    def __init__(self, url, token=None, client_name="latent-bridge-shim", on_event=None):
        self.url = url
        self.token = token or None
        self.client_name = client_name
        # Called on the reader thread with each pushed message (`{event: ...}`, no reply to anything).
        self._on_event = on_event
        self.server = None  # the hello reply of the current connection
        self._ids = itertools.count(1)
        self._connect_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ws = None
        self._waiters = {}
        self._failures = 0
        self._retry_at = 0.0
        self._last_failure = None
        self._closed = False
        self._outbox = queue.Queue(maxsize=POST_QUEUE_SIZE)
        self._sender = None

    # ---- requests -------------------------------------------------------------------------

    def request(self, op, fields, timeout):
        """Sends one request and waits up to `timeout` seconds for its reply's fields.

        Raises SidecarUnavailable, SidecarTimeout or SidecarError.
        """
        ws = self._connection()
        request_id = next(self._ids)
        waiter = _Waiter()
        with self._lock:
            self._waiters[request_id] = waiter
        try:
            self._send(ws, dict(fields, id=request_id, op=op))
            if not waiter.event.wait(timeout):
                raise SidecarTimeout(f"the sidecar did not answer {op} within {timeout:g} s")
        finally:
            with self._lock:
                self._waiters.pop(request_id, None)
        if waiter.failure is not None:
            raise SidecarUnavailable(waiter.failure)
        reply = waiter.reply
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise SidecarError(error.get("code", "internal"), error.get("message", "the sidecar reported an error"))
        return reply

    def post(self, op, build_fields):
        """Queues a message that gets no reply; returns at once, False when the queue is full.

        `build_fields()` runs on the sender thread, so copying a tensor off the GPU and
        packing it cost the caller nothing.
        """
        if self._closed:
            return False
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    self._sender = threading.Thread(target=self._send_posts, name="latent-bridge sender", daemon=True)
                    self._sender.start()
        try:
            self._outbox.put_nowait((op, build_fields))
        except queue.Full:
            return False
        return True

    def close(self):
        """Drops the connection and stops the threads; the client cannot be used afterwards."""
        self._closed = True
        with self._lock:
            ws = self._ws
        if ws is not None:
            self._drop(ws, "the client was closed")
        try:
            self._outbox.put_nowait(None)
        except queue.Full:
            pass

    # ---- connection -------------------------------------------------------------------------

    def _connection(self):
        with self._connect_lock:
            ws = self._ws
            if ws is not None:
                return ws
            if self._closed:
                raise SidecarUnavailable("the client was closed")
            if time.monotonic() < self._retry_at:
                raise SidecarUnavailable(self._last_failure)
            try:
                ws, server = self._open()
            except Exception as error:
                self._failures += 1
                delay = min(RETRY_MAX_DELAY, RETRY_FIRST_DELAY * 2 ** (self._failures - 1))
                self._retry_at = time.monotonic() + delay
                self._last_failure = f"cannot reach the sidecar at {self.url}: {describe_error(error)}"
                raise SidecarUnavailable(self._last_failure) from error
            self._failures = 0
            self.server = server
            with self._lock:
                self._ws = ws
            threading.Thread(target=self._read, args=(ws,), name="latent-bridge reader", daemon=True).start()
            return ws

    def _open(self):
        header = [f"Authorization: Bearer {self.token}"] if self.token else []
        ws = websocket.create_connection(
            self.url, timeout=CONNECT_TIMEOUT, header=header, enable_multithread=True, skip_utf8_validation=True
        )
        try:
            ws.settimeout(IO_TIMEOUT)
            # The handshake runs before the reader thread exists, so its reply is read here.
            self._send(ws, {"id": 0, "op": "hello", "protocol": PROTOCOL, "client": self.client_name}, drop_on_error=False)
            ws.settimeout(CONNECT_TIMEOUT)
            opcode, data = ws.recv_data()
            ws.settimeout(IO_TIMEOUT)
            if opcode != websocket.ABNF.OPCODE_BINARY:
                raise ConnectionError("the server did not answer hello with a binary frame")
            reply = msgpack.unpackb(data, raw=False)
            if not isinstance(reply, dict) or not reply.get("ok"):
                error = reply.get("error", {}) if isinstance(reply, dict) else {}
                raise ConnectionError(f"hello refused: {error.get('message', reply)}")
            return ws, reply
        except Exception:
            ws.shutdown()
            raise

    def _send(self, ws, message, drop_on_error=True):
        payload = msgpack.packb(message, use_bin_type=True)
        try:
            ws.send_frame(_Frame(payload))
        except Exception as error:
            reason = f"connection to the sidecar lost while sending: {describe_error(error)}"
            if drop_on_error:
                self._drop(ws, reason)
            raise SidecarUnavailable(reason) from error

    def _read(self, ws):
        """Reader thread: hands each reply to the request waiting for it."""
        while True:
            with self._lock:
                if self._ws is not ws:
                    return
            try:
                # Wait for data with select so the socket timeout only ever covers a frame
                # that has started to arrive (a timeout mid-frame would desynchronise the stream).
                if not _buffered(ws):
                    readable, _, _ = select.select([ws.sock], [], [], 0.5)
                    if not readable:
                        continue
                opcode, data = ws.recv_data()
            except Exception as error:
                self._drop(ws, f"connection to the sidecar lost: {describe_error(error)}")
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._drop(ws, "the sidecar closed the connection")
                return
            if opcode != websocket.ABNF.OPCODE_BINARY:
                continue
            try:
                reply = msgpack.unpackb(data, raw=False)
            except Exception as error:
                self._drop(ws, f"the sidecar sent an unreadable frame: {describe_error(error)}")
                return
            if not isinstance(reply, dict):
                continue
            if "event" in reply and "id" not in reply:
                self._deliver_event(reply)
                continue
            with self._lock:
                waiter = self._waiters.get(reply.get("id"))
            if waiter is not None:
                waiter.reply = reply
                waiter.event.set()

    def _deliver_event(self, event):
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            # A pushed picture that cannot be used is skipped; the connection is not at fault.
            pass

    def _drop(self, ws, reason):
        with self._lock:
            if self._ws is ws:
                self._ws = None
                self._last_failure = reason
                waiters = list(self._waiters.values())
            else:
                waiters = []
        for waiter in waiters:
            waiter.failure = reason
            waiter.event.set()
        try:
            ws.shutdown()
        except Exception:
            pass

    def _send_posts(self):
        """Sender thread: delivers queued fire-and-forget messages; drops them while the sidecar is away."""
        while True:
            item = self._outbox.get()
            if item is None or self._closed:
                return
            op, build_fields = item
            try:
                ws = self._connection()
                self._send(ws, dict(build_fields(), id=next(self._ids), op=op))
            except SidecarUnavailable:
                continue
            except Exception:
                # A message that cannot be built (a tensor freed under us) is skipped, never fatal.
                continue


def _buffered(ws):
    """Whether a TLS socket holds decrypted bytes that select() cannot see."""
    pending = getattr(ws.sock, "pending", None)
    return callable(pending) and pending() > 0


def describe_error(error):
    """An exception as `Type: message`, for a log line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
