// The live preview viewer. It speaks the same msgpack WebSocket protocol as any client
// (docs/protocol.md): `hello` (for the families' names), one `watch`, then `preview` / `taesd` /
// `job` / `remove` events. Plain browser JavaScript, so users need no build step; msgpack is
// msgpackr's own browser build, which the server serves as /msgpackr.js.
'use strict';

const PROTOCOL = 2;
const HELLO_ID = 1;
const WATCH_ID = 2;
// As the server's codec: no records (extension 0x72) either way, 64-bit integers as numbers,
// bin as a Uint8Array of its own.
const packr = new msgpackr.Packr({ useRecords: false });
const unpackr = new msgpackr.Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', copyBuffers: true });

function decode(frame) {
  return unpackr.unpack(new Uint8Array(frame));
}

function encode(message) {
  return packr.pack(message);
}

const jobsElement = document.getElementById('jobs');
const emptyElement = document.getElementById('empty');
const statusElement = document.getElementById('status');
const clearButton = document.getElementById('clear');
const template = document.getElementById('job-card');
const large = document.getElementById('large');
const largeCanvas = large.querySelector('.large-image');

/**
 * key -> {info, card, canvas, receivedAt, shown, taesdStep, taesdDecodes}: the job as the server
 * last described it, its card, when (page clock) that description arrived (so timings run on
 * without comparing clocks), which picture its canvas shows ('linear' or 'taesd'), the step of
 * its newest TAESD picture (undefined before the first), and how many TAESD pictures were
 * handed to the decoder (so a slow decode never paints over a newer one).
 */
const jobs = new Map();
/** Jobs this page was told to clear, by key and start, so that a reconnect does not bring them back. */
const cleared = new Set();
/** Family name -> label, from the hello reply. */
const familyLabels = new Map();
/** The key of the job in the large view, or null. */
let largeKey = null;

const clearedId = (info) => `${info.key}@${info.started}`;
/** A cleared job comes back only when it runs again: a finished one may be sent again (to a viewer that fell behind, or that reconnects). */
const isCleared = (info) => info.state === 'finished' && cleared.has(clearedId(info));

function setStatus(state, text) {
  statusElement.dataset.state = state;
  statusElement.textContent = text;
}

// ---- time ----------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const total = Math.round(seconds);
  const [h, m, s] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const mmss = `${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(s).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/**
 * Elapsed time, it/s and ETA from the server's step times (docs/protocol.md §4): the rate is the
 * steps between the first and the latest preview over the time between them; the steps before
 * the first preview are counted at that rate.
 */
function timing(entry, now) {
  const { info } = entry;
  const steps = info.step !== null && info.first_step !== null ? info.step - info.first_step : 0;
  const span = (info.stepped - info.started) / 1000;
  const rate = steps > 0 && span > 0 ? steps / span : null;
  const before = rate !== null && info.first_step !== null ? info.first_step / rate : 0;
  const sinceUpdate = (now - entry.receivedAt) / 1000;
  const parts = [];
  if (info.state === 'running') {
    parts.push(duration((info.updated - info.started) / 1000 + sinceUpdate + before));
    if (rate !== null) {
      parts.push(`${rate.toFixed(2)} it/s`);
      if (info.total !== null) parts.push(`ETA ${duration(Math.max(0, (info.total - info.step) / rate - (now - entry.receivedAt) / 1000))}`);
    }
  } else if (rate !== null) {
    // One preview alone tells nothing about how long the job took.
    parts.push(`took ${duration((info.updated - info.started) / 1000 + before)}`, `${rate.toFixed(2)} it/s`);
  }
  return parts.join(' · ') || '\u00a0';
}

// ---- cards ---------------------------------------------------------------------------------

const OUTCOME_WORDS = {
  finished: 'finished',
  interrupted: 'interrupted',
  failed: 'failed',
  disconnected: 'sender disconnected',
  stalled: 'stalled',
};

function stateWords(info) {
  if (info.state === 'running') return 'running';
  return OUTCOME_WORDS[info.outcome] ?? 'finished';
}

function stepWords(info) {
  if (info.step !== null && info.total !== null) return `step ${info.step} / ${info.total}`;
  return info.step !== null ? `step ${info.step}` : '';
}

function modelWords(info) {
  return [info.meta.model, familyLabels.get(info.family) ?? info.family].filter(Boolean).join(' · ');
}

function settingsWords(info) {
  const { seed, sampler, steps, pass } = info.meta;
  return [pass ? `${pass} pass` : '', sampler ?? '', steps !== undefined ? `${steps} steps` : '', seed !== undefined ? `seed ${seed}` : '']
    .filter(Boolean)
    .join(' · ');
}

function detailWords(info) {
  const [batch, channels, height, width] = info.shape;
  const [pixelHeight, pixelWidth] = info.size;
  const parts = [`${pixelWidth}×${pixelHeight} px`, `latent ${width}×${height}×${channels}`];
  if (batch > 1) parts.push(`batch ${batch}`);
  parts.push(info.client);
  return parts.join(' · ');
}

/** What the picture shown is: the kind of preview and its step. */
function sourceWords(entry) {
  const [kind, step] = entry.shown === 'taesd' ? ['TAESD', entry.taesdStep] : ['linear', entry.info.step];
  return step !== null ? `${kind} · step ${step}` : kind;
}

function isAtBottom() {
  return window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 8;
}

function createCard(key) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.dataset.key = key;
  card.querySelector('.picture').addEventListener('click', () => openLarge(key));
  card.querySelector('.save').addEventListener('click', () => save(key));
  return card;
}

/** Shows a job's new description (and image, when it comes with one); new jobs go after the others. */
function showJob(info, image, arrived) {
  let entry = jobs.get(info.key);
  if (entry === undefined) {
    const follow = arrived && jobs.size > 0 && isAtBottom();
    const card = createCard(info.key);
    entry = { info, card, canvas: card.querySelector('.image'), receivedAt: performance.now(), shown: 'linear', taesdStep: undefined, taesdDecodes: 0 };
    jobs.set(info.key, entry);
    jobsElement.append(card);
    emptyElement.hidden = true;
    // Like a log: a page left scrolled to the end keeps the newest job in sight.
    if (follow) card.scrollIntoView({ block: 'end' });
  }
  // A job run again (a client reusing a job name) starts without a TAESD picture.
  if (info.started !== entry.info.started) entry.taesdStep = undefined;
  entry.info = info;
  entry.receivedAt = performance.now();
  // The linear picture goes on show unless the TAESD one there is at least as new.
  if (image !== undefined && !taesdIsNewest(entry)) {
    drawImage(entry.canvas, image);
    entry.shown = 'linear';
  }
  renderCard(entry, performance.now());
  updateClearButton();
  if (largeKey === info.key) renderLarge(entry);
}

function renderCard(entry, now) {
  const { info, card } = entry;
  card.dataset.state = info.state;
  card.dataset.outcome = info.outcome ?? '';
  card.dataset.job = info.job;
  const prompt = card.querySelector('.prompt');
  prompt.textContent = info.meta.prompt ?? info.job;
  prompt.title = info.meta.prompt ?? info.job;
  prompt.classList.toggle('unnamed', info.meta.prompt === undefined);
  card.querySelector('.model').textContent = modelWords(info);
  card.querySelector('.settings').textContent = settingsWords(info) || '\u00a0';
  const state = card.querySelector('.state');
  state.textContent = stateWords(info);
  state.title = info.error ?? '';
  card.querySelector('.step').textContent = stepWords(info);
  card.querySelector('.timing').textContent = timing(entry, now);
  const progress = card.querySelector('progress');
  progress.value = info.step !== null && info.total ? Math.min(1, info.step / info.total) : info.state === 'finished' ? 1 : 0;
  const detail = card.querySelector('.detail');
  detail.textContent = info.outcome === 'failed' && info.error ? `failed: ${info.error}` : detailWords(info);
  detail.title = `${info.job} · ${detailWords(info)}`;
  card.querySelector('.source').textContent = sourceWords(entry);
}

/** Whether the job's newest TAESD picture is of the step of its linear one, or later. */
function taesdIsNewest(entry) {
  const linear = entry.info.step;
  const taesd = entry.taesdStep;
  return taesd !== undefined && (taesd === linear || (taesd !== null && linear !== null && taesd >= linear));
}

/** A job's TAESD picture (a JPEG at full size) goes on show once decoded, when it is at least as new as the linear one. */
function showTaesd(key, step, image) {
  const entry = jobs.get(key);
  if (entry === undefined) return;
  const decode = ++entry.taesdDecodes;
  createImageBitmap(new Blob([image.data], { type: `image/${image.format}` })).then(
    (bitmap) => {
      if (jobs.get(key) === entry && decode === entry.taesdDecodes) {
        entry.taesdStep = step;
        if (taesdIsNewest(entry)) {
          entry.canvas.width = bitmap.width;
          entry.canvas.height = bitmap.height;
          entry.canvas.getContext('2d').drawImage(bitmap, 0, 0);
          entry.shown = 'taesd';
          renderCard(entry, performance.now());
          if (largeKey === key) renderLarge(entry);
        }
      }
      bitmap.close();
    },
    (error) => console.warn(`a TAESD picture of ${key} could not be decoded: ${error}`),
  );
}

function drawImage(canvas, image) {
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
  const entry = jobs.get(key);
  if (entry === undefined) return;
  entry.card.remove();
  jobs.delete(key);
  if (largeKey === key) large.close();
  emptyElement.hidden = jobs.size > 0;
  updateClearButton();
}

// ---- clearing finished jobs ----------------------------------------------------------------

function updateClearButton() {
  const finished = [...jobs.values()].filter((entry) => entry.info.state === 'finished').length;
  clearButton.disabled = finished === 0;
  clearButton.textContent = finished > 0 ? `Clear finished (${finished})` : 'Clear finished';
}

/** Clears finished jobs from this page only: other viewers keep theirs, and the server keeps them as before. */
function clearFinished() {
  for (const entry of [...jobs.values()]) {
    if (entry.info.state !== 'finished') continue;
    cleared.add(clearedId(entry.info));
    removeJob(entry.info.key);
  }
}

clearButton.addEventListener('click', clearFinished);

// ---- large view and saving -----------------------------------------------------------------

function openLarge(key) {
  const entry = jobs.get(key);
  if (entry === undefined) return;
  largeKey = key;
  renderLarge(entry);
  if (!large.open) large.showModal();
}

function renderLarge(entry) {
  const { info, canvas } = entry;
  largeCanvas.width = canvas.width;
  largeCanvas.height = canvas.height;
  largeCanvas.getContext('2d').drawImage(canvas, 0, 0);
  large.querySelector('.large-title').textContent = info.meta.prompt ?? info.job;
  large.querySelector('.large-detail').textContent = [modelWords(info), settingsWords(info), `${stateWords(info)} ${stepWords(info)}`].filter(Boolean).join(' · ');
  large.querySelector('.source').textContent = sourceWords(entry);
}

large.addEventListener('close', () => {
  largeKey = null;
});
// A click anywhere but the bar closes it, as Escape does.
large.addEventListener('click', (event) => {
  if (!event.target.closest('.large-bar')) large.close();
});
large.querySelector('.close').addEventListener('click', () => large.close());
large.querySelector('.save').addEventListener('click', () => largeKey !== null && save(largeKey));

/** `latent-bridge-JOB-seed-SEED-step-STEP-KIND.png` of the picture shown, in characters every file system takes. */
function fileName(entry) {
  const { info, shown } = entry;
  const step = shown === 'taesd' ? entry.taesdStep : info.step;
  const parts = ['latent-bridge', info.job];
  if (info.meta.seed !== undefined) parts.push(`seed ${info.meta.seed}`);
  if (step !== null) parts.push(`step ${step}`);
  parts.push(shown);
  const name = parts
    .join(' ')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `${name.slice(0, 120)}.png`;
}

/** Downloads the picture shown, at its own size, as a PNG. */
function save(key) {
  const entry = jobs.get(key);
  if (entry === undefined) return;
  const name = fileName(entry);
  entry.canvas.toBlob((blob) => {
    if (blob === null) return;
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }, 'image/png');
}

// ---- the connection ------------------------------------------------------------------------

function handle(message) {
  if (message.id === HELLO_ID) {
    if (!message.ok) {
      setStatus('closed', `refused: ${message.error.message}`);
      return;
    }
    for (const family of message.families) familyLabels.set(family.name, family.label);
    for (const entry of jobs.values()) renderCard(entry, performance.now());
    return;
  }
  if (message.id === WATCH_ID) {
    if (!message.ok) {
      setStatus('closed', `refused: ${message.error.message}`);
      return;
    }
    const kept = new Set(message.jobs.map(({ job }) => clearedId(job)));
    for (const id of [...cleared]) if (!kept.has(id)) cleared.delete(id);
    for (const key of [...jobs.keys()]) removeJob(key);
    for (const { job, image, taesd } of message.jobs) {
      if (isCleared(job)) continue;
      cleared.delete(clearedId(job));
      showJob(job, image, false);
      if (taesd !== undefined) showTaesd(job.key, taesd.step, taesd.image);
    }
    setStatus('open', 'connected, watching');
    return;
  }
  switch (message.event) {
    case 'preview':
      if (isCleared(message.job)) break;
      cleared.delete(clearedId(message.job));
      showJob(message.job, message.image, true);
      break;
    case 'taesd':
      showTaesd(message.key, message.step, message.image);
      break;
    case 'job':
      if (jobs.has(message.job.key)) showJob(message.job, undefined, true);
      break;
    case 'remove':
      for (const id of [...cleared]) if (id.startsWith(`${message.key}@`)) cleared.delete(id);
      removeJob(message.key);
      break;
  }
}

setInterval(() => {
  const now = performance.now();
  for (const entry of jobs.values()) if (entry.info.state === 'running') entry.card.querySelector('.timing').textContent = timing(entry, now);
}, 1000);

let retryMs = 500;

function connect() {
  const token = new URLSearchParams(location.search).get('token');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  const socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => {
    retryMs = 500;
    socket.send(encode({ id: HELLO_ID, op: 'hello', protocol: PROTOCOL, client: 'latent-bridge viewer' }));
    socket.send(encode({ id: WATCH_ID, op: 'watch' }));
  };
  socket.onmessage = (event) => handle(decode(event.data));
  socket.onclose = () => {
    setStatus('closed', `disconnected, retrying in ${Math.round(retryMs / 1000)} s…`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  };
}

connect();
