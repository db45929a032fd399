import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { formatBytes } from '../src/console-log.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { specsNamed } from '../src/store/registry.ts';
import { ModelStore, type ModelStatus } from '../src/store/store.ts';
import { storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel, sha256Hex } from './support/fake-hub.ts';

const BIN = fileURLToPath(new URL('../bin/latent-bridge.js', import.meta.url));
const weights = (name: string) => readFileSync(path.join(CONFORMANCE_DIR, `${name}.weights.safetensors`));
const FX_TO_XL = weights('interposer-fx-to-xl-small');
const V1_TO_V3 = weights('interposer-v1-to-v3-small');
const CA_TO_V1 = weights('interposer-ca-to-v1-small');
const UPSCALER = weights('upscaler-x1.5');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The port of a server that has gone: connections to it are refused. */
async function closedPort(): Promise<number> {
  const hub = await FakeHub.start();
  await hub.close();
  return Number(new URL(hub.url).port);
}

describe('latent-bridge models', () => {
  let hub: FakeHub;
  let work: string;
  let env: NodeJS.ProcessEnv;
  // Downloaded from the hub, kept in a models folder, and one the registry pins (the hub serves a stand-in: another sha256).
  const [fetched, second, local, pinned] = specsNamed(['interposer-fx-to-xl', 'interposer-v1-to-v3', 'interposer-ca-to-v1', 'upscaler-v1-x1.5']);

  function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    return new Promise((resolve) => {
      execFile(process.execPath, [BIN, 'models', ...args], { env: { ...env, ...extraEnv }, cwd: work }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
      });
    });
  }

  /** The store the CLI builds from the same environment, to set the scene without a process. */
  function inProcess(): ModelStore {
    return new ModelStore({ ...storeOptionsFromEnv({}, env), progress: silentProgress });
  }

  beforeAll(async () => {
    hub = await FakeHub.start();
    hostModel(hub, fetched, FX_TO_XL);
    hostModel(hub, second, V1_TO_V3);
    hostModel(hub, local, CA_TO_V1);
    hostModel(hub, pinned, UPSCALER);
  });

  afterAll(async () => {
    await hub.close();
  });

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'store-cli-'));
    await mkdir(path.join(work, 'mine'));
    await writeFile(path.join(work, 'mine', local.fileName), CA_TO_V1);
    const { HF_TOKEN: _token, HF_HUB_OFFLINE: _offline, LATENT_BRIDGE_COMFYUI: _comfy, ...inherited } = process.env;
    env = {
      ...inherited,
      HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: path.join(work, 'hub'),
      HF_HOME: path.join(work, 'hf-home'),
      XDG_STATE_HOME: path.join(work, 'state'),
      LATENT_BRIDGE_MODELS: path.join(work, 'mine'),
    };
  });

  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('pull downloads with progress lines and says when each download starts and ends', async () => {
    const run = await cli(['pull', fetched.name, second.name]);
    expect(run.code).toBe(0);
    const size = formatBytes(FX_TO_XL.length);
    expect(run.stderr).toContain(`downloading ${fetched.fileName} (${size})`);
    expect(run.stderr).toContain(`${fetched.fileName}: done`);
    expect(run.stderr).toContain(`downloading ${fetched.name}: ${size} from ${hub.url}\n`);
    expect(run.stderr).toMatch(new RegExp(`downloaded ${fetched.name}: ${size.replace('.', '\\.')} in \\d+\\.\\d s \\([\\d.]+ (B|KiB|MiB)/s\\)\n`));
    expect(run.stdout).toContain(`${fetched.name}: ${path.join(work, 'hub')}`);
    expect(run.stdout).toContain('sha256 verified');
  });

  it('pull refuses a file the hub reports with another sha256 than the pinned one, and downloads nothing', async () => {
    const run = await cli(['pull', pinned.name]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${hub.url} reports sha256 ${sha256Hex(UPSCALER)}`);
    expect(run.stderr).toContain(`the sha256 latent-bridge pins is ${pinned.sha256}; nothing was downloaded`);
    expect(run.stderr).toMatch(new RegExp(`download of ${pinned.name} failed after \\d+\\.\\d s: `));
    await expect(stat(path.join(work, 'hub', 'models--city96--SD-Latent-Upscaler'))).rejects.toThrow();
  });

  it('list --json reports every model, where it is and whether it is verified, as the store does', async () => {
    await inProcess().pull([fetched]);
    const run = await cli(['list', '--json']);
    expect(run.code).toBe(0);
    const statuses = JSON.parse(run.stdout) as ModelStatus[];
    // 12 interposers, 6 upscalers, 4 TAESD decoders.
    expect(statuses.map((s) => s.kind).sort()).toEqual([...Array(12).fill('interposer'), ...Array(4).fill('taesd-decoder'), ...Array(6).fill('upscaler')]);
    expect(statuses.find((s) => s.name === fetched.name)).toMatchObject({ present: true, source: 'hf-cache', size: FX_TO_XL.length, verified: true });
    expect(statuses.find((s) => s.name === local.name)).toMatchObject({ present: true, source: 'models', path: path.join(work, 'mine', local.fileName), verified: false });
    for (const status of statuses) {
      expect(Object.keys(status)).toEqual(expect.arrayContaining(['name', 'kind', 'from', 'to', 'factor', 'present', 'verified']));
    }
    // The server's `models` op returns store.list() for a store built the same way.
    expect(statuses).toEqual(JSON.parse(JSON.stringify(await inProcess().list())));
  });

  it('list prints a table and where it looks', async () => {
    await inProcess().pull([fetched]);
    const run = await cli(['list']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^MODEL\s+PRESENT\s+VERIFIED\s+SIZE\s+SOURCE\s+PATH/);
    expect(run.stdout).toMatch(new RegExp(`${fetched.name}\\s+yes\\s+yes\\s+${formatBytes(FX_TO_XL.length).replace('.', '\\.')}\\s+hf-cache`));
    expect(run.stdout).toContain(`hub cache:      ${path.join(work, 'hub')}`);
  });

  it('list finds the files of a ComfyUI install named in LATENT_BRIDGE_COMFYUI', async () => {
    const nodeModels = path.join(work, 'ComfyUI', 'custom_nodes', 'SD-Latent-Interposer', 'models');
    await mkdir(path.join(work, 'ComfyUI', 'models'), { recursive: true });
    await mkdir(nodeModels, { recursive: true });
    await writeFile(path.join(nodeModels, second.fileName), V1_TO_V3);
    const run = await cli(['list', '--json'], { LATENT_BRIDGE_COMFYUI: path.join(work, 'ComfyUI') });
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as ModelStatus[]).find((s) => s.name === second.name)).toMatchObject({
      present: true,
      source: 'models',
      path: path.join(nodeModels, second.fileName),
    });
  });

  it('verify checks files against the hub sha256 and flags a damaged cache blob', async () => {
    await inProcess().pull([fetched]);
    const first = await cli(['verify', fetched.name, local.name]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`${fetched.name}: ok`);
    expect(first.stdout).toContain(`${local.name}: ok`);
    expect((await inProcess().list()).find((s) => s.name === local.name)?.verified).toBe(true);

    const blobs = path.join(work, 'hub', 'models--city96--SD-Latent-Interposer', 'blobs');
    await writeFile(path.join(blobs, sha256Hex(FX_TO_XL)), Buffer.alloc(FX_TO_XL.length));
    const damaged = await cli(['verify', fetched.name]);
    expect(damaged.code).toBe(1);
    expect(damaged.stdout).toContain(`${fetched.name}: mismatch`);
    expect(damaged.stdout).toContain(`latent-bridge models pull ${fetched.name}`);
    expect(await readdir(blobs)).toContain(sha256Hex(FX_TO_XL));
  });

  it('verify without the hub says what it could not check and why, and never to download a file that is present', async () => {
    const line = (run: Run) => run.stdout.split('\n').find((l) => l.startsWith(`${local.name}:`)) ?? '';
    const offline = await cli(['verify', local.name, '--offline']);
    expect(offline.code).toBe(0);
    expect(line(offline)).toContain(`${local.name}: unchecked - latent-bridge pins no sha256 for this file`);
    expect(line(offline)).toContain('offline the hub cannot be asked; the file is used as it is');

    const unreachable = `http://127.0.0.1:${await closedPort()}`;
    const noHub = await cli(['verify', local.name], { HF_ENDPOINT: unreachable });
    expect(noHub.code).toBe(0);
    expect(line(noHub)).toContain(`${local.name}: unchecked - could not ask ${unreachable} for its sha256, so the file is used as it is: nothing answers`);
    for (const run of [offline, noHub]) {
      expect(line(run)).not.toMatch(/models pull|save it as|cannot download/);
    }

    // Once checked against the hub, the sha256 is known offline too.
    expect((await inProcess().verify([local]))[0].outcome).toBe('verified');
    const later = await cli(['verify', local.name, '--offline']);
    expect(line(later)).toBe(`${local.name}: ok`);
  });

  it('forget drops the sha256 recorded for a file; a pinned file has none to drop', async () => {
    await inProcess().verify([local]);
    const run = await cli(['forget', local.name, pinned.name]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`${local.name}: forgot sha256 ${sha256Hex(CA_TO_V1)} (trusted ${new Date().toISOString().slice(0, 10)}, from ${hub.url})`);
    expect(run.stdout).toContain(`${pinned.name}: latent-bridge pins its sha256 (${pinned.sha256}); there is nothing to forget`);
  });

  it('offline: pull fails with what to do, list still works', async () => {
    const pull = await cli(['pull', 'interposer-v1-to-xl', '--offline']);
    expect(pull.code).toBe(1);
    expect(pull.stderr).toContain('downloads are off');
    expect(pull.stderr).toContain('v1-to-xl_interposer-v4.0.safetensors');
    const list = await cli(['list', '--offline']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('hub:            offline (no downloads)');
  });

  it('rejects unknown names and missing arguments', async () => {
    const unknown = await cli(['pull', 'upscaler-v1-x3.0']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown model "upscaler-v1-x3.0"');
    expect((await cli(['pull'])).stderr).toContain('give model names or --all');
    expect((await cli(['frobnicate'])).stderr).toContain('unknown action');
  });
});
