import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { renderPreview } from '../src/preview.ts';
import { seededData } from './support/conformance.ts';
import { startTestServer, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

afterAll(() => browser.close());

/** RGB bytes of the job's canvas, read back from the page. */
async function canvasPixels(page: Page, job: string): Promise<{ width: number; height: number; rgb: number[] }> {
  return page.evaluate((name) => {
    const card = [...document.querySelectorAll('.job')].find((c) => c.querySelector('.name')?.textContent === name);
    const canvas = card?.querySelector('canvas') as HTMLCanvasElement;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    const rgb: number[] = [];
    for (let i = 0; i < data.length; i += 4) rgb.push(data[i], data[i + 1], data[i + 2]);
    return { width: canvas.width, height: canvas.height, rgb };
  }, job);
}

function card(page: Page, job: string) {
  return page.locator('.job', { has: page.locator('.name', { hasText: job }) });
}

function stepLatent(step: number): Latent {
  return makeLatent('xl', 'model', [1, 4, 12, 20], seededData(4 * 12 * 20, step, 2));
}

describe('viewer page in Chromium', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ models: [] });
  });

  afterAll(() => server.close());

  it('shows each job’s latest preview with step, family and size as it arrives, and keeps finished ones', async () => {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
    await page.goto(`${server.server.url}/`);
    await expect.poll(() => page.locator('#status').getAttribute('data-state')).toBe('open');
    expect(await page.locator('#empty').isVisible()).toBe(true);

    const sender = await TestClient.connect(server.wsUrl);
    await sender.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: 'webui' });
    for (const step of [1, 2, 3]) {
      await sender.request({ op: 'preview', family: 'xl', job: 'txt2img-7', step, total: 5, latent: wireTensor([1, 4, 12, 20], stepLatent(step).data) });
    }
    const running = card(page, 'txt2img-7');
    await expect.poll(() => running.locator('.step').textContent()).toBe('step 3 / 5');
    expect(await running.getAttribute('data-state')).toBe('running');
    const detail = await running.locator('.detail').textContent();
    expect(detail).toContain('xl');
    expect(detail).toContain('20×12 latent');
    expect(detail).toContain('160×96 px');
    expect(detail).toContain('webui');
    const shown = await canvasPixels(page, 'txt2img-7');
    expect([shown.width, shown.height]).toEqual([20, 12]);
    expect(shown.rgb).toEqual([...renderPreview(stepLatent(3)).data]);

    // A second job, in a 2-item grid, and the first one finishing.
    const batch = makeLatent('v1', 'model', [2, 4, 8, 8], seededData(512, 9, 2));
    await sender.request({ op: 'preview', family: 'v1', job: 'img2img-8', step: 1, total: 10, grid: true, latent: wireTensor(batch.shape, batch.data) });
    await sender.request({ op: 'preview', family: 'xl', job: 'txt2img-7', step: 5, total: 5, latent: wireTensor([1, 4, 12, 20], stepLatent(5).data) });
    await expect.poll(() => running.getAttribute('data-state')).toBe('finished');
    expect(await running.locator('.step').textContent()).toBe('step 5 / 5');
    expect((await canvasPixels(page, 'txt2img-7')).rgb).toEqual([...renderPreview(stepLatent(5)).data]);
    await expect.poll(() => card(page, 'img2img-8').locator('.step').textContent()).toBe('step 1 / 10');
    const grid = await canvasPixels(page, 'img2img-8');
    expect([grid.width, grid.height]).toEqual([16, 8]);
    expect(grid.rgb).toEqual([...renderPreview(batch, { grid: true }).data]);

    // When the sender goes away its unfinished job is shown as finished, with its last image.
    sender.close();
    await expect.poll(() => card(page, 'img2img-8').getAttribute('data-state')).toBe('finished');

    // A viewer that opens later gets every kept job at once.
    const late = await browser.newPage();
    await late.goto(`${server.server.url}/`);
    await expect.poll(() => late.locator('.job').count()).toBe(2);
    expect((await canvasPixels(late, 'txt2img-7')).rgb).toEqual([...renderPreview(stepLatent(5)).data]);
    expect(consoleErrors).toEqual([]);
    await late.close();
    await page.close();
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
    await sender.request({ op: 'preview', family: 'xl', job: 'secured', step: 2, total: 4, latent: wireTensor([1, 4, 12, 20], stepLatent(2).data) });
    await expect.poll(() => card(page, 'secured').locator('.step').textContent()).toBe('step 2 / 4');
    expect((await canvasPixels(page, 'secured')).rgb).toEqual([...renderPreview(stepLatent(2)).data]);
    sender.close();
    await page.close();
  });
});
