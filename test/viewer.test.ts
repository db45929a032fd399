import { mkdirSync, readFileSync } from 'node:fs';
import sharp from 'sharp';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeLatent, type Latent } from '../src/latent.ts';
import { renderPreview, type RgbImage } from '../src/preview.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { startTestServer, TestClient, wireTensor, type Reply, type TestServer } from './support/server-harness.ts';
import { fetchMetrics, metric } from './support/server-observe.ts';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** Set VIEWER_SCREENSHOTS=DIR to keep the screenshots the tests take, to look at them. */
const SCREENSHOTS = process.env.VIEWER_SCREENSHOTS;

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

afterAll(() => browser.close());

// ---- pictures ------------------------------------------------------------------------------

/** A latent whose preview looks like a picture (smooth shapes), different for each `seed`. */
function sceneLatent(family: 'xl' | 'v1', height: number, width: number, seed: number, batch = 1): Latent {
  const data = new Float32Array(batch * 4 * height * width);
  for (let i = 0; i < data.length; i++) {
    const x = i % width;
    const y = Math.floor(i / width) % height;
    const c = Math.floor(i / (width * height)) % 4;
    data[i] = 1.6 * Math.sin((x / width) * (2 + c + seed) + c) * Math.cos((y / height) * (3 + seed) - c * 0.7) + 0.4 * Math.sin((x + y) / (6 + seed));
  }
  return makeLatent(family, 'model', [batch, 4, height, width], data);
}

/** A latent whose preview is one colour. */
function flatLatent(height: number, width: number, values: readonly number[]): Latent {
  const data = new Float32Array(4 * height * width);
  for (let c = 0; c < 4; c++) data.fill(values[c], c * height * width, (c + 1) * height * width);
  return makeLatent('xl', 'model', [1, 4, height, width], data);
}

function previewOf(latent: Latent, job: string, step: number, total: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { op: 'preview', family: latent.family, job, step, total, latent: wireTensor(latent.shape, latent.data), ...extra };
}

/** Pixels as the tests compare them: RGB bytes, row by row. */
interface Pixels {
  readonly width: number;
  readonly height: number;
  readonly rgb: Buffer;
}

function pixelsOf(image: RgbImage): Pixels {
  return { width: image.width, height: image.height, rgb: Buffer.from(image.data) };
}

/** RGBA from a canvas or bitmap, in the page, handed over as base64 (a long array of numbers would take seconds). */
type PagePixels = { width: number; height: number; base64: string };

function fromPage({ width, height, base64 }: PagePixels): Pixels {
  const rgba = Buffer.from(base64, 'base64');
  const rgb = Buffer.alloc(width * height * 3);
  for (let p = 0; p < width * height; p++) rgba.copy(rgb, p * 3, p * 4, p * 4 + 3);
  return { width, height, rgb };
}

/** PNG bytes decoded by Chromium, in `page` (off screen: nothing on the page changes). */
async function decodePng(page: Page, png: Buffer): Promise<Pixels> {
  const decoded = await page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d')!;
    context.drawImage(bitmap, 0, 0);
    const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    let binary = '';
    for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
    return { width: bitmap.width, height: bitmap.height, base64: btoa(binary) };
  }, png.toString('base64'));
  return fromPage(decoded);
}

// ---- the page ------------------------------------------------------------------------------

interface Box {
  readonly job: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

async function openViewer(context: BrowserContext, url: string): Promise<{ page: Page; consoleErrors: string[] }> {
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  await page.goto(url);
  await expect.poll(() => page.locator('#status').getAttribute('data-state')).toBe('open');
  return { page, consoleErrors };
}

function card(page: Page, job: string) {
  return page.locator(`.job[data-job="${job}"]`);
}

/** The pixels of a canvas, read back from the page. */
async function canvasPixels(page: Page, selector: string): Promise<Pixels> {
  const read = await page.$eval(selector, (element) => {
    const canvas = element as HTMLCanvasElement;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let binary = '';
    for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
    return { width: canvas.width, height: canvas.height, base64: btoa(binary) };
  });
  return fromPage(read);
}

/** Every card's box in page coordinates (independent of scrolling). */
async function cardBoxes(page: Page): Promise<Box[]> {
  return page.$$eval('.job', (cards) =>
    cards.map((c) => {
      const r = c.getBoundingClientRect();
      return { job: (c as HTMLElement).dataset.job ?? '', x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height };
    }),
  );
}

function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

function expectNoOverlap(boxes: Box[]): void {
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) expect(overlaps(boxes[i], boxes[j]), `${boxes[i].job} and ${boxes[j].job} overlap`).toBe(false);
}

async function screenshot(page: Page, name: string, fullPage = false): Promise<void> {
  if (SCREENSHOTS === undefined) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage });
}

function meanAbsDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

async function metricValue(server: TestServer, name: string): Promise<number> {
  return metric(await fetchMetrics(server.server.url), name);
}

async function stepsShown(page: Page, job: string, text: string): Promise<void> {
  await expect.poll(() => card(page, job).locator('.step').textContent()).toBe(text);
}

// ---- tests ---------------------------------------------------------------------------------

/** The functions of viewer.js that the tests call in the page. */
interface ViewerGlobals {
  timing(entry: { info: object; receivedAt: number }, now: number): string;
  decode(frame: ArrayBuffer): unknown;
}

describe('viewer page in Chromium', () => {
  // A server of each test's own: what a page shows never depends on another test.
  let server: TestServer;
  let sender: TestClient;

  beforeEach(async () => {
    server = await startTestServer({ models: [] });
    sender = await TestClient.connect(server.wsUrl);
    expect((await sender.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: 'webui' })).ok).toBe(true);
  });

  afterEach(async () => {
    sender.close();
    await server.close();
  });

  it('shows each job with its prompt, model, family, seed, sampler, steps, pass, progress and how it ended', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page, consoleErrors } = await openViewer(context, `${server.server.url}/`);
    expect(await page.locator('#empty').isVisible()).toBe(true);
    const meta = { prompt: 'a lighthouse on a cliff at dusk, dramatic clouds', model: 'sd_xl_base_1.0', seed: 1234, sampler: 'DPM++ 2M', steps: 30, pass: 'first' };
    for (const step of [1, 2, 3]) await sender.request(previewOf(sceneLatent('xl', 24, 32, step), 'meta-job', step, 5, { meta }));
    const shown = card(page, 'meta-job');
    await stepsShown(page, 'meta-job', 'step 3 / 5');
    expect(await page.locator('#empty').isVisible()).toBe(false);
    expect(await shown.locator('.prompt').textContent()).toBe(meta.prompt);
    // The family's name comes from the server's hello reply.
    expect(await shown.locator('.model').textContent()).toBe('sd_xl_base_1.0 · Stable Diffusion XL');
    expect(await shown.locator('.settings').textContent()).toBe('first pass · DPM++ 2M · 30 steps · seed 1234');
    expect(await shown.locator('.state').textContent()).toBe('running');
    expect(await shown.getAttribute('data-state')).toBe('running');
    expect(await shown.locator('.timing').textContent()).toMatch(/^\d+(\.\d)? s · \d+\.\d\d it\/s · ETA \d+(\.\d)? s$/);
    expect(await shown.locator('.source').textContent()).toBe('linear · step 3');
    expect(await shown.locator('.detail').textContent()).toBe('256×192 px · latent 32×24×4 · webui');
    expect(await canvasPixels(page, '.job[data-job="meta-job"] canvas')).toEqual(pixelsOf(renderPreview(sceneLatent('xl', 24, 32, 3))));

    // A job without metadata is named by its job name; a batch shows as a grid.
    const batch = sceneLatent('v1', 8, 8, 9, 2);
    await sender.request(previewOf(batch, 'bare-job', 1, 10, { grid: true }));
    await stepsShown(page, 'bare-job', 'step 1 / 10');
    expect(await card(page, 'bare-job').locator('.prompt').textContent()).toBe('bare-job');
    expect(await card(page, 'bare-job').locator('.model').textContent()).toBe('Stable Diffusion 1.x / 2.x');
    expect(await card(page, 'bare-job').locator('.detail').textContent()).toBe('64×64 px · latent 8×8×4 · batch 2 · webui');
    expect(await canvasPixels(page, '.job[data-job="bare-job"] canvas')).toEqual(pixelsOf(renderPreview(batch, { grid: true })));

    // Interrupted, failed, finished by its last step, and a sender that goes away.
    await sender.request({ op: 'end', job: 'meta-job', outcome: 'interrupted' });
    await expect.poll(() => shown.locator('.state').textContent()).toBe('interrupted');
    expect([await shown.getAttribute('data-state'), await shown.getAttribute('data-outcome')]).toEqual(['finished', 'interrupted']);
    expect(await shown.locator('.timing').textContent()).toMatch(/^took \d+(\.\d)? s · \d+\.\d\d it\/s$/);
    await sender.request(previewOf(sceneLatent('xl', 24, 32, 4), 'failing-job', 2, 20));
    await sender.request({ op: 'end', job: 'failing-job', outcome: 'failed', error: 'OutOfMemoryError: CUDA out of memory' });
    await expect.poll(() => card(page, 'failing-job').locator('.state').textContent()).toBe('failed');
    expect(await card(page, 'failing-job').locator('.detail').textContent()).toBe('failed: OutOfMemoryError: CUDA out of memory');
    await sender.request(previewOf(sceneLatent('xl', 24, 32, 5), 'done-job', 20, 20));
    await expect.poll(() => card(page, 'done-job').locator('.state').textContent()).toBe('finished');
    const leaving = await TestClient.connect(server.wsUrl);
    await leaving.request(previewOf(sceneLatent('xl', 24, 32, 6), 'orphan-job', 3, 20));
    await stepsShown(page, 'orphan-job', 'step 3 / 20');
    leaving.close();
    await expect.poll(() => card(page, 'orphan-job').locator('.state').textContent()).toBe('sender disconnected');

    // Running and finished jobs look different: the running one has a coloured frame and glow.
    await sender.request(previewOf(sceneLatent('xl', 24, 32, 7), 'running-job', 2, 20));
    await stepsShown(page, 'running-job', 'step 2 / 20');
    const look = (job: string) =>
      card(page, job).evaluate((element) => {
        const style = getComputedStyle(element);
        const badge = getComputedStyle(element.querySelector('.state')!);
        return { border: style.borderTopColor, glow: style.boxShadow, badge: badge.color };
      });
    const running = await look('running-job');
    const ended = await Promise.all(['meta-job', 'failing-job', 'done-job', 'orphan-job'].map(look));
    expect(running.glow).not.toBe('none');
    for (const other of ended) {
      expect(other.glow).toBe('none');
      expect(other.border).not.toBe(running.border);
      expect(other.badge).not.toBe(running.badge);
    }
    expect(new Set(ended.map((e) => e.badge)).size).toBe(4);
    await screenshot(page, 'desktop-states', true);

    // A viewer that opens later gets every kept job at once, with the same words.
    const late = await openViewer(context, `${server.server.url}/`);
    await expect.poll(() => late.page.locator('.job').count()).toBe(6);
    expect(await cardBoxes(late.page).then((boxes) => boxes.map((b) => b.job))).toEqual(['meta-job', 'bare-job', 'failing-job', 'done-job', 'orphan-job', 'running-job']);
    expect(await card(late.page, 'meta-job').locator('.settings').textContent()).toBe('first pass · DPM++ 2M · 30 steps · seed 1234');
    expect(await card(late.page, 'failing-job').locator('.state').textContent()).toBe('failed');
    expect(await canvasPixels(late.page, '.job[data-job="done-job"] canvas')).toEqual(pixelsOf(renderPreview(sceneLatent('xl', 24, 32, 5))));
    expect(consoleErrors).toEqual([]);
    expect(late.consoleErrors).toEqual([]);
    await context.close();
  });

  it('computes elapsed time, it/s and ETA from the step times the server records', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page } = await openViewer(context, `${server.server.url}/`);
    // 8 steps (2 to 10) in 4 s: 2 it/s; step 1 came before the first preview, 0.5 s more.
    const info = { state: 'running', step: 10, total: 20, first_step: 2, started: 1_000, stepped: 5_000, updated: 5_000 };
    const timing = (job: object, receivedAt: number, now: number) =>
      page.evaluate(({ job, receivedAt, now }) => (window as unknown as ViewerGlobals).timing({ info: job, receivedAt }, now), { job, receivedAt, now });
    const running = await timing(info, 100, 1_100);
    expect(running).toBe('6.0 s · 2.00 it/s · ETA 4.0 s');
    const finished = await timing({ ...info, state: 'finished', updated: 5_250 }, 100, 9_000);
    expect(finished).toBe('took 5.3 s · 2.00 it/s');
    const minutes = await timing({ ...info, step: 100, total: 1000, first_step: 1, stepped: 100_000, updated: 100_000, started: 1_000 }, 0, 0);
    expect(minutes).toBe('1:40 · 1.00 it/s · ETA 15:00');
    const single = await timing({ ...info, state: 'finished', step: 3, first_step: 3 }, 0, 0);
    expect(single).toBe('\u00a0');
    await context.close();
  });

  for (const [name, viewport] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    it(`at ${name} width, a new job never moves or resizes the ones shown, cards never overlap, and one job alone is as large as the window allows`, async () => {
      const context = await browser.newContext({ viewport });
      const { page, consoleErrors } = await openViewer(context, `${server.server.url}/`);
      const prefix = `layout-${name}`;

      const meta = (seed: number) => ({ prompt: `a quiet harbour town at dawn, soft fog, fishing boats, seed ${seed}`, model: 'sd_xl_base_1.0', seed, sampler: 'Euler a', steps: 20, pass: 'first' });
      await sender.request(previewOf(sceneLatent('xl', 64, 64, 1), `${prefix}-1`, 1, 20, { meta: meta(1) }));
      await stepsShown(page, `${prefix}-1`, 'step 1 / 20');
      const [alone] = await cardBoxes(page);
      const picture = await card(page, `${prefix}-1`).locator('canvas').boundingBox();
      const jobsWidth = await page.$eval('#jobs', (element) => element.clientWidth);
      if (name === 'phone') {
        expect(alone.width).toBe(jobsWidth);
      } else {
        // The picture is as tall as it can be with the whole card in the window.
        expect(picture!.height).toBeGreaterThan(0.6 * viewport.height);
        expect(alone.y + alone.height).toBeLessThanOrEqual(viewport.height);
      }
      await screenshot(page, `${name}-one-job`);

      let before = await cardBoxes(page);
      const shapes: [number, number][] = [
        [48, 64],
        [64, 40],
        [32, 32],
        [64, 64],
      ];
      for (const [i, [height, width]] of shapes.entries()) {
        const job = `${prefix}-${i + 2}`;
        await sender.request(previewOf(sceneLatent('xl', height, width, i + 2), job, 1, 20, { meta: meta(i + 2) }));
        await stepsShown(page, job, 'step 1 / 20');
        const after = await cardBoxes(page);
        expect(after.slice(0, -1)).toEqual(before);
        expect(after.at(-1)!.job).toBe(job);
        expectNoOverlap(after);
        before = after;
      }
      // Steps, ends and failures change no card's box either.
      for (const step of [2, 3, 4]) for (const i of [1, 2, 3]) await sender.request(previewOf(sceneLatent('xl', ...shapes[i - 1], step), `${prefix}-${i + 1}`, step, 20, { meta: meta(i + 1) }));
      await sender.request({ op: 'end', job: `${prefix}-1`, outcome: 'interrupted' });
      await sender.request({ op: 'end', job: `${prefix}-2`, outcome: 'failed', error: `RuntimeError: ${'a very long message '.repeat(10)}` });
      await sender.request(previewOf(sceneLatent('xl', 64, 40, 20), `${prefix}-3`, 20, 20, { meta: meta(3) }));
      await expect.poll(() => card(page, `${prefix}-3`).locator('.state').textContent()).toBe('finished');
      await expect.poll(() => card(page, `${prefix}-2`).locator('.state').textContent()).toBe('failed');
      expect(await cardBoxes(page)).toEqual(before);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);

      // Every line of text stays inside its card.
      const spill = await page.$$eval('.job', (cards) =>
        cards.flatMap((c) => {
          const box = c.getBoundingClientRect();
          return [...c.querySelectorAll('p, progress, button, .state')]
            .map((e) => e.getBoundingClientRect())
            .filter((r) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.bottom > box.bottom + 0.5)
            .map(() => (c as HTMLElement).dataset.job);
        }),
      );
      expect(spill).toEqual([]);
      await page.evaluate(() => window.scrollTo(0, 0));
      await screenshot(page, `${name}-jobs`);
      await screenshot(page, `${name}-jobs-full`, true);
      expect(consoleErrors).toEqual([]);
      await context.close();
    });
  }

  it('shows on screen exactly the colours of the preview', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page } = await openViewer(context, `${server.server.url}/`);
    const flat = flatLatent(16, 16, [0.5, -0.8, 0.3, 0.1]);
    await sender.request(previewOf(flat, 'flat-job', 2, 10));
    await stepsShown(page, 'flat-job', 'step 2 / 10');
    const colour = [...renderPreview(flat).data.subarray(0, 3)];
    const shot = await decodePng(page, await card(page, 'flat-job').locator('canvas').screenshot());
    const centre = (Math.floor(shot.height / 2) * shot.width + Math.floor(shot.width / 2)) * 3;
    expect([...shot.rgb.subarray(centre, centre + 3)]).toEqual(colour);
    await context.close();
  });

  for (const [name, viewport] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    it(`at ${name} width, shows a preview large on click or Enter, live, over the whole window, and closes on Escape, Close or a click`, async () => {
      const context = await browser.newContext({ viewport });
      const { page, consoleErrors } = await openViewer(context, `${server.server.url}/`);
      const job = `large-${name}`;
      const meta = { prompt: 'a red fox in fresh snow', model: 'sd_xl_base_1.0', seed: 77, sampler: 'Euler', steps: 12 };
      await sender.request(previewOf(sceneLatent('xl', 40, 64, 1), job, 3, 12, { meta }));
      await stepsShown(page, job, 'step 3 / 12');
      await card(page, job).locator('.picture').click();
      const dialog = page.locator('#large');
      await expect.poll(() => dialog.evaluate((d) => (d as HTMLDialogElement).open)).toBe(true);
      expect(await dialog.boundingBox()).toEqual({ x: 0, y: 0, width: viewport.width, height: viewport.height });
      expect(await canvasPixels(page, '#large canvas')).toEqual(pixelsOf(renderPreview(sceneLatent('xl', 40, 64, 1))));
      expect(await dialog.locator('.large-title').textContent()).toBe(meta.prompt);
      expect(await dialog.locator('.source').textContent()).toBe('linear · step 3');
      // The picture fills the window's width or its height (less the caption), keeping its shape.
      const shown = await dialog.locator('canvas').evaluate((canvas) => {
        const box = canvas.getBoundingClientRect();
        const scale = Math.min(box.width / (canvas as HTMLCanvasElement).width, box.height / (canvas as HTMLCanvasElement).height);
        return { width: (canvas as HTMLCanvasElement).width * scale, height: (canvas as HTMLCanvasElement).height * scale, box: { right: box.right, bottom: box.bottom } };
      });
      expect(shown.width).toBeGreaterThan(0.85 * viewport.width - 40);
      expect(shown.box.right).toBeLessThanOrEqual(viewport.width);
      expect(shown.box.bottom).toBeLessThanOrEqual(viewport.height);
      await screenshot(page, `${name}-large`);

      // It follows the job while open.
      await sender.request(previewOf(sceneLatent('xl', 40, 64, 2), job, 4, 12, { meta }));
      await expect.poll(() => dialog.locator('.source').textContent()).toBe('linear · step 4');
      expect(await canvasPixels(page, '#large canvas')).toEqual(pixelsOf(renderPreview(sceneLatent('xl', 40, 64, 2))));

      await page.keyboard.press('Escape');
      await expect.poll(() => dialog.evaluate((d) => (d as HTMLDialogElement).open)).toBe(false);
      // Focus goes back to the picture, where Enter opens it again.
      expect(await page.evaluate(() => document.activeElement?.closest('.job')?.getAttribute('data-job'))).toBe(job);
      await page.keyboard.press('Enter');
      await expect.poll(() => dialog.evaluate((d) => (d as HTMLDialogElement).open)).toBe(true);
      await dialog.locator('.close').click();
      await expect.poll(() => dialog.evaluate((d) => (d as HTMLDialogElement).open)).toBe(false);
      await card(page, job).locator('.picture').click();
      await page.mouse.click(4, 4);
      await expect.poll(() => dialog.evaluate((d) => (d as HTMLDialogElement).open)).toBe(false);
      expect(consoleErrors).toEqual([]);
      await context.close();
    });
  }

  it('saves the picture shown as a PNG named after the job, from the card and from the large view', async () => {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    const { page } = await openViewer(context, `${server.server.url}/`);
    const latent = sceneLatent('xl', 24, 40, 3);
    await sender.request(previewOf(latent, 'txt2img 20250301120000 #2', 7, 20, { meta: { seed: 31337 } }));
    const shown = card(page, 'txt2img 20250301120000 #2');
    await expect.poll(() => shown.locator('.step').textContent()).toBe('step 7 / 20');
    const fromCard = () => shown.locator('.save').click();
    const fromLargeView = async () => {
      await shown.locator('.picture').click();
      await page.locator('#large .save').click();
    };
    for (const save of [fromCard, fromLargeView]) {
      const [download] = await Promise.all([page.waitForEvent('download'), save()]);
      expect(download.suggestedFilename()).toBe('latent-bridge-txt2img-20250301120000-2-seed-31337-step-7-linear.png');
      const png = readFileSync((await download.path())!);
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect(await decodePng(page, png)).toEqual(pixelsOf(renderPreview(latent)));
    }
    await context.close();
  });

  it('clears finished jobs from this page only, and brings a cleared job back only when it runs again', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page } = await openViewer(context, `${server.server.url}/`);
    const other = await openViewer(context, `${server.server.url}/`);
    await sender.request(previewOf(sceneLatent('xl', 16, 16, 1), 'clear-done', 10, 10));
    await sender.request(previewOf(sceneLatent('xl', 16, 16, 2), 'clear-stopped', 3, 10));
    await sender.request({ op: 'end', job: 'clear-stopped', outcome: 'interrupted' });
    await sender.request(previewOf(sceneLatent('xl', 16, 16, 3), 'clear-running', 3, 10));
    await stepsShown(page, 'clear-running', 'step 3 / 10');
    await expect.poll(() => card(page, 'clear-stopped').locator('.state').textContent()).toBe('interrupted');
    const finishedHere = await page.locator('.job[data-state="finished"]').count();
    expect(await page.locator('#clear').textContent()).toBe(`Clear finished (${finishedHere})`);
    const allThere = await other.page.locator('.job').count();

    await page.locator('#clear').click();
    expect(await page.locator('.job[data-state="finished"]').count()).toBe(0);
    expect(await card(page, 'clear-running').count()).toBe(1);
    expect(await page.locator('#clear').isDisabled()).toBe(true);
    // The other viewer, and the server, still have them.
    expect(await other.page.locator('.job').count()).toBe(allThere);
    const watcher = await TestClient.connect(server.wsUrl);
    const { jobs } = await watcher.request({ op: 'watch' });
    watcher.close();
    expect(jobs.map((j: { job: { job: string } }) => j.job.job)).toEqual(expect.arrayContaining(['clear-done', 'clear-stopped']));

    // A later state change of a cleared job does not bring it back; running again does.
    await sender.request({ op: 'end', job: 'clear-stopped', outcome: 'failed', error: 'late' });
    await expect.poll(() => card(other.page, 'clear-stopped').locator('.state').textContent()).toBe('failed');
    expect(await card(page, 'clear-stopped').count()).toBe(0);
    await sender.request(previewOf(sceneLatent('xl', 16, 16, 4), 'clear-stopped', 4, 10));
    await stepsShown(page, 'clear-stopped', 'step 4 / 10');
    expect(await card(page, 'clear-stopped').getAttribute('data-state')).toBe('running');
    await context.close();
  });
});

describe('TAESD pictures in the viewer', () => {
  let server: TestServer;
  let sender: TestClient;

  // The stand-in TAESD decoders are among the test server's weights by default.
  beforeEach(async () => {
    server = await startTestServer();
    sender = await TestClient.connect(server.wsUrl);
  });

  afterEach(async () => {
    sender.close();
    await server.close();
  });

  /** The `taesd` event of a job's step, as a watcher of the test's own got it. */
  async function pushedTaesd(watcher: TestClient, job: string, step: number): Promise<Reply> {
    return watcher.waitForEvent((e) => e.event === 'taesd' && e.key.endsWith(`/${job}`) && e.step === step);
  }

  it('shows the TAESD picture at full size when it is at least as new as the linear one, else the linear one, and says which and of which step', async () => {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    const watcher = await TestClient.connect(server.wsUrl);
    expect((await watcher.request({ op: 'watch' })).ok).toBe(true);
    const first = await openViewer(context, `${server.server.url}/`);
    const latents = [1, 2, 3, 4].map((seed) => sceneLatent('xl', 12, 16, seed));
    await sender.request(previewOf(latents[0], 'taesd-job', 1, 10, { meta: { seed: 5 } }));
    const pushed = await pushedTaesd(watcher, 'taesd-job', 1);
    const shown = card(first.page, 'taesd-job');
    await expect.poll(() => shown.locator('.source').textContent()).toBe('TAESD · step 1');
    // Full size (8 image pixels per latent pixel): exactly the JPEG the server sent (libvips and
    // Chromium both decode with libjpeg-turbo), which is the decoder's picture up to JPEG's loss.
    const picture = await canvasPixels(first.page, '.job[data-job="taesd-job"] canvas');
    expect([picture.width, picture.height]).toEqual([128, 96]);
    expect(picture.rgb.equals(await sharp(Buffer.from(pushed.image.data)).raw().toBuffer())).toBe(true);
    expect(meanAbsDifference(picture.rgb, (await server.engine.decodePreview(latents[0], {})).data)).toBeLessThan(16);
    const box = await shown.locator('canvas').boundingBox();
    await screenshot(first.page, 'desktop-taesd');

    // Saved as what it is, at its size.
    const [download] = await Promise.all([first.page.waitForEvent('download'), shown.locator('.save').click()]);
    expect(download.suggestedFilename()).toBe('latent-bridge-taesd-job-seed-5-step-1-taesd.png');
    expect(await decodePng(first.page, readFileSync((await download.path())!))).toEqual(picture);

    // With nobody watching, a step gets no TAESD picture: a page opening then has the linear
    // picture of step 2 and the TAESD one of step 1, and shows the linear one.
    watcher.close();
    await first.page.close();
    await expect.poll(() => metricValue(server, 'latent_bridge_viewers')).toBe(0);
    await sender.request(previewOf(latents[1], 'taesd-job', 2, 10, { meta: { seed: 5 } }));
    const second = await openViewer(context, `${server.server.url}/`);
    const again = card(second.page, 'taesd-job');
    await expect.poll(() => again.locator('.source').textContent()).toBe('linear · step 2');
    expect(await canvasPixels(second.page, '.job[data-job="taesd-job"] canvas')).toEqual(pixelsOf(renderPreview(latents[1])));
    // The card keeps its size whichever picture it shows.
    expect(await again.locator('canvas').boundingBox()).toEqual(box);

    // Watched again: step 3 shows linear, then TAESD once its picture comes.
    await sender.request(previewOf(latents[2], 'taesd-job', 3, 10, { meta: { seed: 5 } }));
    await expect.poll(() => again.locator('.source').textContent()).toBe('TAESD · step 3');
    const third = await canvasPixels(second.page, '.job[data-job="taesd-job"] canvas');
    expect(meanAbsDifference(third.rgb, (await server.engine.decodePreview(latents[2], {})).data)).toBeLessThan(16);
    await again.locator('.picture').click();
    await expect.poll(() => second.page.locator('#large .source').textContent()).toBe('TAESD · step 3');
    expect(await canvasPixels(second.page, '#large canvas')).toEqual(third);
    await screenshot(second.page, 'desktop-taesd-large');
    // A page that opens now gets both pictures in its snapshot, and shows the TAESD one.
    const later = await openViewer(context, `${server.server.url}/`);
    await expect.poll(() => card(later.page, 'taesd-job').locator('.source').textContent()).toBe('TAESD · step 3');
    expect(await canvasPixels(later.page, '.job[data-job="taesd-job"] canvas')).toEqual(third);
    for (const page of [first, second, later]) expect(page.consoleErrors).toEqual([]);
    await context.close();
  });
});

describe('msgpack in the page', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ models: [] });
  });

  afterAll(() => server.close());

  it('is msgpackr’s own browser build, loaded under the strict Content-Security-Policy', async () => {
    const context = await browser.newContext();
    const { page, consoleErrors } = await openViewer(context, `${server.server.url}/`);
    const response = await page.request.get(`${server.server.url}/msgpackr.js`);
    expect(response.status()).toBe(200);
    expect(await response.body()).toEqual(readFileSync('node_modules/msgpackr/dist/index-no-eval.min.js'));
    const policy = (await page.request.get(`${server.server.url}/`)).headers()['content-security-policy'];
    expect(policy).toContain("script-src 'self';");
    expect(policy).not.toContain('unsafe-eval');
    expect(await page.evaluate(() => typeof (globalThis as { msgpackr?: unknown }).msgpackr)).toBe('object');
    // Nothing it does needs eval: a refused eval would show as an error here.
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('decodes every msgpack form the protocol uses as the hand-written decoder did: maps as objects, bin as a Uint8Array of its own, 64-bit integers as numbers', async () => {
    const context = await browser.newContext();
    const { page } = await openViewer(context, `${server.server.url}/`);
    const { encodeMessage } = await import('../src/protocol/codec.ts');
    const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]));
    const message = {
      event: 'preview',
      job: { key: '1/a', step: null, total: 20, state: 'running', meta: { prompt: 'ünïcödé 🏰', seed: 4_294_967_295 }, shape: [1, 4, 64, 64], size: [512, 512] },
      numbers: [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 40, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 40), 1.5, -0.25, 1e300],
      flags: [true, false, null],
      strings: ['', 'a'.repeat(31), 'b'.repeat(32), 'c'.repeat(255), 'd'.repeat(256), 'e'.repeat(70_000)],
      bins: [bytes(0), bytes(10), bytes(300), bytes(70_000)],
      many,
      long: Array.from({ length: 20 }, (_, i) => i),
    };
    // Forms the server's encoder does not produce for these values but the old decoder read: uint64, int64, float32.
    const handmade = [
      [[0xcf, 0, 0, 1, 0, 0, 0, 0, 0], 2 ** 40],
      [[0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0], -(2 ** 40)],
      [[0xca, 0x3f, 0xc0, 0, 0], 1.5],
      [[0xd0, 0x80], -128],
      [[0xc4, 2, 9, 8], { bin: [9, 8] }],
    ] as const;
    const described = await page.evaluate(
      ({ frame, frames }) => {
        const describe = (value: unknown): unknown => {
          if (value instanceof Uint8Array) return { bin: [...value], own: value.byteOffset === 0 && value.buffer.byteLength === value.byteLength };
          if (Array.isArray(value)) return value.map(describe);
          if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
          return value;
        };
        const toBuffer = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
        const { decode } = window as unknown as ViewerGlobals;
        return { message: describe(decode(toBuffer(frame))), handmade: frames.map((f) => describe(decode(toBuffer(f)))) };
      },
      { frame: encodeMessage(message).toString('base64'), frames: handmade.map(([b]) => Buffer.from(b).toString('base64')) },
    );
    const expected = JSON.parse(JSON.stringify(message, (_, value) => (value instanceof Uint8Array ? { bin: [...value], own: true } : value)));
    expect(described.message).toEqual(expected);
    expect(described.handmade).toEqual(handmade.map(([, value]) => (typeof value === 'object' ? { ...value, own: true } : value)));
    await context.close();
  });
});

describe('viewer page with a token', () => {
  let server: TestServer;
  const token = 'viewer-token';

  beforeAll(async () => {
    server = await startTestServer({ token, models: [] });
  });

  afterAll(() => server.close());

  it('works when opened with ?token=, and is refused without it', async () => {
    const page = await browser.newPage();
    const refused = await page.goto(`${server.server.url}/`);
    expect(refused?.status()).toBe(401);
    await page.goto(`${server.server.url}/?token=${token}`);
    await expect.poll(() => page.locator('#status').getAttribute('data-state')).toBe('open');
    const sender = await TestClient.connect(`${server.wsUrl}?token=${token}`);
    const latent = sceneLatent('xl', 12, 20, 2);
    await sender.request(previewOf(latent, 'secured', 2, 4));
    await stepsShown(page, 'secured', 'step 2 / 4');
    expect(await canvasPixels(page, '.job[data-job="secured"] canvas')).toEqual(pixelsOf(renderPreview(latent)));
    sender.close();
    await page.close();
  });
});
