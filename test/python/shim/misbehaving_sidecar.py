"""A WebSocket server that speaks the protocol's framing but answers wrongly (for one fault test only).

It answers `hello` as the sidecar does, then every other request through `answer(message)`.
Written on plain sockets (RFC 6455 handshake and frames) so the tests need no server library.
"""

import base64
import hashlib
import socket
import struct
import threading

import msgpack
import numpy as np

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class MisbehavingSidecar:
    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.url = f"ws://127.0.0.1:{self._server.getsockname()[1]}/ws"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._server.close()

    def _accept(self):
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        with connection:
            stream = connection.makefile("rb")
            headers = {}
            stream.readline()
            while True:
                line = stream.readline().decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()).decode()
            connection.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode())
            while True:
                frame = self._read_frame(stream)
                if frame is None:
                    return
                message = msgpack.unpackb(frame, raw=False)
                self.requests.append(message)
                if message.get("op") == "hello":
                    reply = {"id": message["id"], "ok": True, "protocol": 2, "server": "misbehaving"}
                else:
                    reply = self.answer(message)
                if reply is not None:
                    self._send(connection, msgpack.packb(reply, use_bin_type=True))

    @staticmethod
    def _read_frame(stream):
        head = stream.read(2)
        if len(head) < 2 or head[0] & 0x0F == 0x8:
            return None
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", stream.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", stream.read(8))
        mask = np.frombuffer(stream.read(4), dtype=np.uint8)
        payload = np.frombuffer(stream.read(length), dtype=np.uint8)
        return (payload ^ np.resize(mask, length)).tobytes()

    @staticmethod
    def _send(connection, payload):
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x82, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x82, 126, length)
        else:
            header = struct.pack("!BBQ", 0x82, 127, length)
        connection.sendall(header + payload)
