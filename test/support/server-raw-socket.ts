import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { unpackr } from './server-harness.ts';

/**
 * A WebSocket client on a bare TCP socket, for what a normal client library will not do:
 * several frames in one TCP write, or frames that break the WebSocket framing itself.
 */
export class RawWebSocket {
  readonly socket: net.Socket;
  /** The server's handshake response: status line and headers. */
  readonly handshake: string;
  readonly messages: Record<string, any>[] = [];
  readonly closed: Promise<void>;
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];

  private constructor(socket: net.Socket, handshake: string, rest: Buffer) {
    this.socket = socket;
    this.handshake = handshake;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', () => {});
    if (rest.length > 0) this.#receive(rest);
  }

  /** Opens a WebSocket; `headers` are extra request header lines, each ending in CRLF. */
  static connect(port: number, path = '/ws', headers = ''): Promise<RawWebSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${headers}\r\n`,
        );
      });
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('error', reject);
        const handshake = head.subarray(0, end).toString();
        if (!handshake.startsWith('HTTP/1.1 101')) reject(new Error(handshake));
        else resolve(new RawWebSocket(socket, handshake, head.subarray(end + 4)));
      };
      socket.on('data', onData);
    });
  }

  /** A masked client frame (mask key zero, which leaves the payload as is). */
  static frame(payload: Uint8Array, opcode = 0x2): Buffer {
    const length = payload.byteLength;
    const header =
      length < 126
        ? Buffer.from([0x80 | opcode, 0x80 | length])
        : length < 65536
          ? Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff])
          : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), Buffer.from(new BigUint64Array([BigInt(length)]).buffer).reverse()]);
    return Buffer.concat([header, Buffer.alloc(4), payload]);
  }

  /** Writes bytes in one TCP write. */
  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  async waitForMessages(count: number): Promise<Record<string, any>[]> {
    while (this.messages.length < count) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    return this.messages;
  }

  close(): void {
    this.socket.destroy();
  }

  #receive(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      if (this.#buffer.length < 2) return;
      const opcode = this.#buffer[0] & 0x0f;
      let length = this.#buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.#buffer.length < 4) return;
        length = this.#buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.#buffer.length < 10) return;
        length = Number(this.#buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.#buffer.length < offset + length) return;
      const payload = this.#buffer.subarray(offset, offset + length);
      this.#buffer = this.#buffer.subarray(offset + length);
      if (opcode === 0x2) this.messages.push(unpackr.unpack(payload) as Record<string, any>);
      for (const wake of this.#waiters.splice(0)) wake();
    }
  }
}
