// The live preview viewer. It speaks the same msgpack WebSocket protocol as any client
// (docs/protocol.md): one `watch` request, then `preview` / `job` / `remove` events.
// Plain browser JavaScript with no dependencies, so users need no build step.
'use strict';

/** The subset of msgpack the protocol uses: maps, arrays, strings, bin, numbers, booleans, nil. */
const msgpack = {
  decode(buffer) {
    const view = new DataView(buffer);
    const bytes = new Uint8Array(buffer);
    const text = new TextDecoder();
    let at = 0;
    const str = (n) => text.decode(bytes.subarray(at, (at += n)));
    const bin = (n) => bytes.slice(at, (at += n));
    const array = (n) => Array.from({ length: n }, () => read());
    const map = (n) => {
      const out = {};
      for (let i = 0; i < n; i++) {
        const key = String(read());
        out[key] = read();
      }
      return out;
    };
    const u8 = () => view.getUint8(at++);
    const u16 = () => ((at += 2), view.getUint16(at - 2));
    const u32 = () => ((at += 4), view.getUint32(at - 4));
    function read() {
      const b = u8();
      if (b <= 0x7f) return b;
      if (b >= 0xe0) return b - 0x100;
      if ((b & 0xf0) === 0x80) return map(b & 0x0f);
      if ((b & 0xf0) === 0x90) return array(b & 0x0f);
      if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
      switch (b) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return bin(u8());
        case 0xc5: return bin(u16());
        case 0xc6: return bin(u32());
        case 0xca: return ((at += 4), view.getFloat32(at - 4));
        case 0xcb: return ((at += 8), view.getFloat64(at - 8));
        case 0xcc: return u8();
        case 0xcd: return u16();
        case 0xce: return u32();
        case 0xcf: return ((at += 8), Number(view.getBigUint64(at - 8)));
        case 0xd0: return ((at += 1), view.getInt8(at - 1));
        case 0xd1: return ((at += 2), view.getInt16(at - 2));
        case 0xd2: return ((at += 4), view.getInt32(at - 4));
        case 0xd3: return ((at += 8), Number(view.getBigInt64(at - 8)));
        case 0xd9: return str(u8());
        case 0xda: return str(u16());
        case 0xdb: return str(u32());
        case 0xdc: return array(u16());
        case 0xdd: return array(u32());
        case 0xde: return map(u16());
        case 0xdf: return map(u32());
        default: throw new Error(`msgpack type 0x${b.toString(16)} is not used by the protocol`);
      }
    }
    return read();
  },

  /** Encodes a flat map of short strings and small non-negative integers: all the viewer sends. */
  encode(message) {
    const out = [];
    const entries = Object.entries(message);
    out.push(0x80 | entries.length);
    const put = (value) => {
      if (typeof value === 'number') {
        if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new Error('unsupported number');
        if (value <= 0x7f) out.push(value);
        else out.push(0xcd, value >> 8, value & 0xff);
        return;
      }
      const utf8 = new TextEncoder().encode(String(value));
      if (utf8.length > 0xff) throw new Error('string too long');
      out.push(0xd9, utf8.length, ...utf8);
    };
    for (const [key, value] of entries) {
      put(key);
      put(value);
    }
    return new Uint8Array(out);
  },
};

const WATCH_ID = 1;
const jobsElement = document.getElementById('jobs');
const emptyElement = document.getElementById('empty');
const statusElement = document.getElementById('status');
const template = document.getElementById('job-card');
/** key -> card element */
const cards = new Map();

function setStatus(state, text) {
  statusElement.dataset.state = state;
  statusElement.textContent = text;
}

function describeJob(job) {
  const [batch, channels, height, width] = job.shape;
  const [pixelHeight, pixelWidth] = job.size;
  const parts = [job.family, `${width}×${height} latent`, `${pixelWidth}×${pixelHeight} px`];
  if (batch > 1) parts.push(`batch ${batch}`);
  parts.push(`${channels} channels`, job.client);
  return parts.join(' · ');
}

function cardFor(key) {
  let card = cards.get(key);
  if (card === undefined) {
    card = template.content.firstElementChild.cloneNode(true);
    card.dataset.key = key;
    cards.set(key, card);
    jobsElement.prepend(card);
    emptyElement.hidden = true;
  }
  return card;
}

function showJob(job) {
  const card = cardFor(job.key);
  card.dataset.state = job.state;
  card.querySelector('.name').textContent = job.job;
  const step = card.querySelector('.step');
  if (job.step !== null && job.total !== null) step.textContent = `step ${job.step} / ${job.total}`;
  else if (job.step !== null) step.textContent = `step ${job.step}`;
  else step.textContent = '';
  card.querySelector('.state').textContent = job.state;
  const progress = card.querySelector('progress');
  progress.value = job.step !== null && job.total ? Math.min(1, job.step / job.total) : job.state === 'finished' ? 1 : 0;
  card.querySelector('.detail').textContent = describeJob(job);
  card.querySelector('.image').title = `${job.job}: ${describeJob(job)}`;
  return card;
}

function showImage(card, image) {
  const canvas = card.querySelector('.image');
  canvas.width = image.width;
  canvas.height = image.height;
  const rgba = new ImageData(image.width, image.height);
  const pixels = image.width * image.height;
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += 3, o += 4) {
    rgba.data[o] = image.data[i];
    rgba.data[o + 1] = image.data[i + 1];
    rgba.data[o + 2] = image.data[i + 2];
    rgba.data[o + 3] = 255;
  }
  canvas.getContext('2d').putImageData(rgba, 0, 0);
}

function removeJob(key) {
  const card = cards.get(key);
  if (card === undefined) return;
  card.remove();
  cards.delete(key);
  emptyElement.hidden = cards.size > 0;
}

function handle(message) {
  if (message.id === WATCH_ID) {
    if (!message.ok) {
      setStatus('closed', `refused: ${message.error.message}`);
      return;
    }
    for (const key of [...cards.keys()]) removeJob(key);
    for (const { job, image } of message.jobs) showImage(showJob(job), image);
    setStatus('open', 'connected, watching');
    return;
  }
  switch (message.event) {
    case 'preview':
      showImage(showJob(message.job), message.image);
      break;
    case 'job':
      showJob(message.job);
      break;
    case 'remove':
      removeJob(message.key);
      break;
  }
}

let retryMs = 500;

function connect() {
  const token = new URLSearchParams(location.search).get('token');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  const socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => {
    retryMs = 500;
    socket.send(msgpack.encode({ id: WATCH_ID, op: 'watch' }));
  };
  socket.onmessage = (event) => handle(msgpack.decode(event.data));
  socket.onclose = () => {
    setStatus('closed', `disconnected, retrying in ${Math.round(retryMs / 1000)} s…`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  };
}

connect();
