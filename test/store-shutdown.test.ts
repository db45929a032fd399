import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeLatent } from '../src/latent.ts';
import { formatBytes } from '../src/console-log.ts';
import { specsNamed } from '../src/store/registry.ts';
import { CONFORMANCE_DIR, seededData } from './support/conformance.ts';
import { FakeHub, hostModel } from './support/fake-hub.ts';
import { TestClient, wireTensor } from './support/server-harness.ts';
import { isolatedEnv, REPO_ROOT, spawnServe } from './support/server-process.ts';

const XL_TO_V1 = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-xl-to-v1.weights.safetensors'));
const STALL_AT = 1_000_000;
/** Generous for a loaded machine, far below the 300 s undici waits for a stalled body before it gives up. */
const EXIT_WITHIN_MS = 20_000;

function exitWithin(exited: Promise<number | null>): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), EXIT_WITHIN_MS)));
  return Promise.race([exited, deadline]).finally(() => clearTimeout(timer));
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** SIGTERM or SIGINT while a model downloads from a hub that sent part of the file and then stalls. */
describe('stopping while a download stalls', () => {
  const [interposer] = specsNamed(['interposer-xl-to-v1']);
  let hub: FakeHub;
  let stalled: Promise<void>;
  let sha: string;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  const blobs = () => path.join(work, 'hub', 'models--city96--SD-Latent-Interposer', 'blobs');
  const incomplete = () => path.join(blobs(), `${sha}.incomplete`);
  const cancelledLine = () =>
    `cancelled the download of ${interposer.name} at ${formatBytes(STALL_AT)} of ${formatBytes(XL_TO_V1.length)}; the partial file ${incomplete()} is kept to resume`;

  beforeEach(async () => {
    hub = await FakeHub.start();
    sha = hostModel(hub, interposer, XL_TO_V1);
    stalled = hub.stallTransfers(STALL_AT);
    work = await mkdtemp(path.join(os.tmpdir(), 'store-shutdown-'));
    env = isolatedEnv({ HF_HUB_OFFLINE: '0', HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(work, 'hub') });
  });

  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await hub.close();
    await rm(work, { recursive: true, force: true });
  });

  /** Once the stalled bytes are all on disk, so the line the process prints is known exactly. */
  async function stalledOnDisk(): Promise<void> {
    await stalled;
    await until(async () => (await stat(incomplete()).catch(() => undefined))?.size === STALL_AT);
  }

  async function expectOnlyThePartialFile(): Promise<void> {
    expect(await readdir(blobs())).toEqual([`${sha}.incomplete`]);
    expect((await stat(incomplete())).size).toBe(STALL_AT);
    await expect(stat(path.join(work, 'hub', 'models--city96--SD-Latent-Interposer', 'snapshots'))).rejects.toThrow();
  }

  it('serve: SIGTERM answers the waiting request, cancels the download, says what it kept and exits', async () => {
    const serve = await spawnServe(['--port', '0', '--device', 'cpu'], env);
    children.push(serve.child);
    const client = await TestClient.connect(`ws://127.0.0.1:${serve.port}/ws`);
    const latent = makeLatent('xl', 'model', [1, 4, 8, 8], seededData(256, 1));
    const reply = client.request({ op: 'interpose', from: 'xl', to: 'v1', latent: wireTensor(latent.shape, latent.data) });
    await stalledOnDisk();

    serve.child.kill('SIGTERM');
    expect(await exitWithin(serve.exited)).toBe(0);
    const answer = await Promise.race([reply, client.closed.then(() => 'closed without a reply')]);
    expect(answer).toMatchObject({ ok: false, error: { code: expect.stringMatching(/^(busy|model_unavailable)$/), message: expect.stringMatching(/shutting down|stopping/) } });
    expect(serve.output()).toContain(`downloading ${interposer.name}: ${formatBytes(XL_TO_V1.length)} from ${hub.url}\n`);
    expect(serve.output()).toContain(`${cancelledLine()}\n`);
    await expectOnlyThePartialFile();
  });

  it('models pull: SIGINT cancels the download, says what it kept and exits with 130', async () => {
    const child = spawn(process.execPath, ['bin/latent-bridge.js', 'models', 'pull', interposer.name], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await stalledOnDisk();

    child.kill('SIGINT');
    expect(await exitWithin(exited)).toBe(130);
    expect(stderr).toContain(`${cancelledLine()}\n`);
    expect(stderr).toContain('SIGINT: pull stopped; run the same command again to resume');
    await expectOnlyThePartialFile();
  });
});
