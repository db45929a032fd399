import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentProgress } from '../src/store/download-progress.ts';
import { specsNamed } from '../src/store/registry.ts';
import { ModelStore, type ModelStatus } from '../src/store/store.ts';
import { storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel } from './support/fake-hub.ts';

const BIN = fileURLToPath(new URL('../bin/latent-bridge.js', import.meta.url));
const UPSCALER = readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.5.weights.safetensors'));
const FX_TO_XL = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-fx-to-xl-small.weights.safetensors'));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('latent-bridge models', () => {
  let hub: FakeHub;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const [upscaler, interposer, local] = specsNamed(['upscaler-v1-x1.5', 'interposer-fx-to-xl', 'upscaler-v1-x1.25']);

  function cli(...args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      execFile(process.execPath, [BIN, 'models', ...args], { env, cwd: work }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
      });
    });
  }

  beforeAll(async () => {
    hub = await FakeHub.start();
    hostModel(hub, upscaler, UPSCALER);
    hostModel(hub, interposer, FX_TO_XL);
    hostModel(hub, local, readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.25-small.weights.safetensors')));
    work = await mkdtemp(path.join(os.tmpdir(), 'store-cli-'));
    await mkdir(path.join(work, 'mine'));
    await writeFile(path.join(work, 'mine', local.fileName), readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.25-small.weights.safetensors')));
    const { HF_TOKEN: _token, HF_HUB_OFFLINE: _offline, ...inherited } = process.env;
    env = {
      ...inherited,
      HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: path.join(work, 'hub'),
      HF_HOME: path.join(work, 'hf-home'),
      XDG_STATE_HOME: path.join(work, 'state'),
      LATENT_BRIDGE_MODELS: path.join(work, 'mine'),
    };
  });

  afterAll(async () => {
    await hub.close();
    await rm(work, { recursive: true, force: true });
  });

  it('pull downloads with progress lines on a non-terminal stderr', async () => {
    const run = await cli('pull', upscaler.name, interposer.name);
    expect(run.stderr).toContain(`downloading ${upscaler.fileName} (2.3 MiB)`);
    expect(run.stderr).toContain(`${upscaler.fileName}: done`);
    expect(run.stdout).toContain(`${upscaler.name}: ${path.join(work, 'hub')}`);
    expect(run.stdout).toContain('sha256 verified');
    expect(run.code).toBe(0);
  });

  it('list --json reports every model, where it is and whether it is verified, as the store does', async () => {
    const run = await cli('list', '--json');
    expect(run.code).toBe(0);
    const statuses = JSON.parse(run.stdout) as ModelStatus[];
    expect(statuses).toHaveLength(18);
    expect(statuses.find((s) => s.name === upscaler.name)).toMatchObject({ present: true, source: 'hf-cache', size: UPSCALER.length, verified: true });
    expect(statuses.find((s) => s.name === local.name)).toMatchObject({ present: true, source: 'models', path: path.join(work, 'mine', local.fileName), verified: false });
    for (const status of statuses) {
      expect(Object.keys(status)).toEqual(expect.arrayContaining(['name', 'kind', 'from', 'to', 'factor', 'present', 'verified']));
    }
    // The server's `models` op returns store.list() for a store built the same way.
    const inProcess = await new ModelStore({ ...storeOptionsFromEnv({}, env), progress: silentProgress }).list();
    expect(statuses).toEqual(JSON.parse(JSON.stringify(inProcess)));
  });

  it('list prints a table and where it looks', async () => {
    const run = await cli('list');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^MODEL\s+PRESENT\s+VERIFIED\s+SIZE\s+SOURCE\s+PATH/);
    expect(run.stdout).toMatch(new RegExp(`${upscaler.name}\\s+yes\\s+yes\\s+2\\.3 MiB\\s+hf-cache`));
    expect(run.stdout).toContain(`hub cache:      ${path.join(work, 'hub')}`);
  });

  it('verify checks files against the hub sha256 and flags a damaged cache blob', async () => {
    const first = await cli('verify', upscaler.name, local.name);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`${local.name}: ok`);
    const listed = JSON.parse((await cli('list', '--json')).stdout) as ModelStatus[];
    expect(listed.find((s) => s.name === local.name)?.verified).toBe(true);

    const blobs = path.join(work, 'hub', 'models--city96--SD-Latent-Upscaler', 'blobs');
    const [blob] = (await readdir(blobs)).filter((name) => /^[0-9a-f]{64}$/.test(name) && readFileSync(path.join(blobs, name)).length === UPSCALER.length);
    await writeFile(path.join(blobs, blob), Buffer.alloc(UPSCALER.length));
    const damaged = await cli('verify', upscaler.name);
    expect(damaged.code).toBe(1);
    expect(damaged.stdout).toContain(`${upscaler.name}: mismatch`);
    expect(damaged.stdout).toContain(`latent-bridge models pull ${upscaler.name}`);

    const repaired = await cli('pull', upscaler.name);
    expect(repaired.code).toBe(0);
    expect((await cli('verify', upscaler.name)).code).toBe(0);
  });

  it('offline: pull fails with what to do, list still works', async () => {
    const pull = await cli('pull', 'interposer-v1-to-xl', '--offline');
    expect(pull.code).toBe(1);
    expect(pull.stderr).toContain('downloads are off');
    expect(pull.stderr).toContain('v1-to-xl_interposer-v4.0.safetensors');
    const list = await cli('list', '--offline');
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('hub:            offline (no downloads)');
  });

  it('rejects unknown names and missing arguments', async () => {
    const unknown = await cli('pull', 'upscaler-v1-x3.0');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown model "upscaler-v1-x3.0"');
    expect((await cli('pull')).stderr).toContain('give model names or --all');
    expect((await cli('frobnicate')).stderr).toContain('unknown action');
  });
});
