import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { parentPort, workerData } from 'node:worker_threads';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';

/**
 * Runs in a worker thread (its own event loop, so the bench's work cannot delay it): sends
 * `hello` to the server over and over, one at a time, and keeps the longest round trip since
 * 'start'. A server that stalls leaves the hello in flight unanswered for the whole stall.
 */
const { url } = workerData as { url: string };
const port = parentPort as NonNullable<typeof parentPort>;
const packr = new Packr({ useRecords: false });
const ws = new WebSocket(url);
let worst = 0;
let sentAt = 0;
let id = 0;

function ping(): void {
  sentAt = performance.now();
  ws.send(packr.pack({ id: ++id, op: 'hello', protocol: PROTOCOL_VERSION }));
}

ws.on('open', () => {
  port.postMessage('ready');
  ping();
});
ws.on('message', () => {
  worst = Math.max(worst, performance.now() - sentAt);
  // A millisecond's pause keeps the probe from loading the server it measures.
  setTimeout(ping, 1);
});
port.on('message', (message: string) => {
  if (message === 'start') worst = 0;
  else if (message === 'stop') port.postMessage(Math.max(worst, performance.now() - sentAt));
  else ws.close();
});
