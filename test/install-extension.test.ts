import { execFile } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { installExtension, LOCATION_FILE, SHIM_DIR, type SidecarLocation } from '../src/cli/install-extension.ts';

const BIN = fileURLToPath(new URL('../bin/latent-bridge.js', import.meta.url));
let work: string;
let shim: string;
let webui: string;

function fakeWebui(name: string): string {
  const dir = path.join(work, name);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'launch.py'), '# the webui launcher\n');
  return dir;
}

function location(dir: string): SidecarLocation {
  return JSON.parse(readFileSync(path.join(dir, LOCATION_FILE), 'utf8')) as SidecarLocation;
}

beforeEach(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'install-extension-'));
  // A copy of python-shim stands in for the checkout's, so the tests write nothing into the repository.
  shim = path.join(work, 'python-shim');
  cpSync(SHIM_DIR, shim, { recursive: true, filter: (source) => path.basename(source) !== '__pycache__' && path.basename(source) !== LOCATION_FILE });
  webui = fakeWebui('webui');
});

afterEach(() => rmSync(work, { recursive: true, force: true }));

describe('install-extension', () => {
  it('links python-shim into WEBUI_DIR/extensions/latent-bridge and records where the sidecar is', async () => {
    const result = await installExtension(webui, { copy: false, force: false, shimDir: shim });
    const target = path.join(webui, 'extensions', 'latent-bridge');
    expect(result).toEqual({ target, linked: true, replaced: 'none' });
    expect(lstatSync(target).isSymbolicLink()).toBe(true);
    expect(realpathSync(target)).toBe(realpathSync(shim));
    for (const file of ['install.py', 'preload.py', 'scripts/latent_bridge.py', 'latent_bridge_shim/client.py']) {
      expect(existsSync(path.join(target, file))).toBe(true);
    }
    const where = location(shim);
    expect(where.sidecar).toBe(BIN);
    expect(existsSync(where.sidecar)).toBe(true);
    expect(where.node).toBe(process.execPath);
    expect(where.serve_args).toEqual([]);
  });

  it('copies with --copy, without caches, and puts the location file into the copy', async () => {
    mkdirSync(path.join(shim, 'latent_bridge_shim', '__pycache__'));
    writeFileSync(path.join(shim, 'latent_bridge_shim', '__pycache__', 'client.cpython-311.pyc'), 'x');
    const result = await installExtension(webui, { copy: true, force: false, shimDir: shim });
    expect(result.linked).toBe(false);
    expect(lstatSync(result.target).isDirectory()).toBe(true);
    expect(readFileSync(path.join(result.target, 'scripts', 'latent_bridge.py'), 'utf8')).toBe(readFileSync(path.join(shim, 'scripts', 'latent_bridge.py'), 'utf8'));
    expect(existsSync(path.join(result.target, 'latent_bridge_shim', '__pycache__'))).toBe(false);
    expect(location(result.target).sidecar).toBe(BIN);
    expect(existsSync(path.join(shim, LOCATION_FILE))).toBe(false);
  });

  it('updates its own earlier install, link or copy, either way round', async () => {
    await installExtension(webui, { copy: true, force: false, shimDir: shim });
    const linked = await installExtension(webui, { copy: false, force: false, shimDir: shim });
    expect(linked.replaced).toBe('our-copy');
    expect(lstatSync(linked.target).isSymbolicLink()).toBe(true);
    const again = await installExtension(webui, { copy: false, force: false, shimDir: shim });
    expect(again.replaced).toBe('our-link');
    const copied = await installExtension(webui, { copy: true, force: false, shimDir: shim });
    expect(copied.replaced).toBe('our-link');
    expect(lstatSync(copied.target).isSymbolicLink()).toBe(false);
    // Replacing a link removes the link, never the files it points at.
    expect(existsSync(path.join(shim, 'install.py'))).toBe(true);
  });

  it('leaves a folder that is not ours alone unless --force', async () => {
    const foreign = path.join(webui, 'extensions', 'latent-bridge');
    mkdirSync(foreign, { recursive: true });
    writeFileSync(path.join(foreign, 'keep.txt'), 'someone else');
    await expect(installExtension(webui, { copy: false, force: false, shimDir: shim })).rejects.toThrow(/already exists and is not this latent-bridge.*--force/);
    expect(readFileSync(path.join(foreign, 'keep.txt'), 'utf8')).toBe('someone else');
    const forced = await installExtension(webui, { copy: false, force: true, shimDir: shim });
    expect(forced.replaced).toBe('foreign');
    expect(realpathSync(forced.target)).toBe(realpathSync(shim));
  });

  it('keeps the serve arguments a user added when it updates its install', async () => {
    const first = await installExtension(webui, { copy: true, force: false, shimDir: shim });
    const file = path.join(first.target, LOCATION_FILE);
    writeFileSync(file, JSON.stringify({ ...location(first.target), serve_args: ['--models', '/data/latents'] }));
    const again = await installExtension(webui, { copy: false, force: false, shimDir: shim });
    expect(location(shim).serve_args).toEqual(['--models', '/data/latents']);
    expect(location(again.target).sidecar).toBe(BIN);
  });

  it('installs no second copy next to the repository installed from the Extensions tab', async () => {
    // What Install from URL leaves: a clone of the repository, python-shim/ inside it.
    const clone = path.join(webui, 'extensions', 'latent-bridge-main');
    cpSync(shim, path.join(clone, 'python-shim'), { recursive: true });
    writeFileSync(path.join(clone, 'install.py'), '# the repository root is the extension\n');
    for (const force of [false, true]) {
      await expect(installExtension(webui, { copy: false, force, shimDir: shim })).rejects.toThrow(
        `${clone} holds latent-bridge already (installed from the webui's Extensions tab, or by hand), and the webui would load it twice`,
      );
    }
    expect(existsSync(path.join(webui, 'extensions', 'latent-bridge'))).toBe(false);
    expect(existsSync(path.join(shim, LOCATION_FILE))).toBe(false);
  });

  it('says so when the repository was installed from the Extensions tab under its own name', async () => {
    const clone = path.join(webui, 'extensions', 'latent-bridge');
    cpSync(shim, path.join(clone, 'python-shim'), { recursive: true });
    await expect(installExtension(webui, { copy: false, force: false, shimDir: shim })).rejects.toThrow(
      /is latent-bridge installed from the webui's Extensions tab .* needs no install-extension; pass --force/,
    );
    expect(lstatSync(clone).isSymbolicLink()).toBe(false);
    const forced = await installExtension(webui, { copy: false, force: true, shimDir: shim });
    expect(forced.replaced).toBe('repository');
    expect(realpathSync(forced.target)).toBe(realpathSync(shim));
  });

  it('refuses a folder that is not a webui, and one that does not exist', async () => {
    const plain = path.join(work, 'plain');
    mkdirSync(plain);
    await expect(installExtension(plain, { copy: false, force: false, shimDir: shim })).rejects.toThrow(BridgeError);
    await expect(installExtension(plain, { copy: false, force: false, shimDir: shim })).rejects.toThrow(/does not look like a webui folder/);
    await expect(installExtension(path.join(work, 'missing'), { copy: false, force: false, shimDir: shim })).rejects.toThrow(/does not exist/);
    expect(existsSync(path.join(plain, 'extensions'))).toBe(false);
  });

  it('runs from the command line: --copy installs, a missing folder argument is a usage error', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [BIN, 'install-extension', webui, '--copy']);
    expect(stdout).toMatch(/installed .*extensions\/latent-bridge \(copied from/);
    expect(location(path.join(webui, 'extensions', 'latent-bridge')).sidecar).toBe(BIN);
    await expect(run(process.execPath, [BIN, 'install-extension'])).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/give exactly one WEBUI_DIR/) });
    const help = await run(process.execPath, [BIN, 'install-extension', '--help']);
    expect(help.stdout).toMatch(/usage: latent-bridge install-extension WEBUI_DIR/);
  });
});
