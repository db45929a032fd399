import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { cp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BridgeError } from '../errors.ts';
import type { Command } from './command.ts';

/** The folder name the extension gets under WEBUI_DIR/extensions (the webui's canonical name is it, lowercased). */
export const EXTENSION_NAME = 'latent-bridge';
/** What the extension's autostart reads to find Node and the sidecar (python-shim/latent_bridge_shim/autostart.py). */
export const LOCATION_FILE = 'sidecar.json';
/** The extension's Python package, in python-shim/ and in every install of it. */
const PACKAGE = 'latent_bridge_shim';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SHIM_DIR = path.join(REPO_ROOT, 'python-shim');
const SIDECAR_ENTRY = path.join(REPO_ROOT, 'bin', 'latent-bridge.js');
/** Files of A1111, Forge and reForge roots; one is enough to tell a webui folder. */
const WEBUI_MARKERS = ['launch.py', 'webui.py'];
/** Never copied: Python caches and this machine's location file. */
const NOT_COPIED = new Set(['__pycache__', LOCATION_FILE, '.pytest_cache']);

const usage = `usage: latent-bridge install-extension WEBUI_DIR [--copy] [--force]

Puts the webui extension (python-shim/) into WEBUI_DIR/extensions/${EXTENSION_NAME} for
Automatic1111 1.6-1.10, Forge or reForge, and records where Node and this sidecar are, so the
extension can start the sidecar by itself. Restart the webui afterwards.

For a checkout of your own. Installed from the webui's Extensions tab (Install from URL), the
repository is the extension already and sets up its sidecar itself: this is then not needed,
and refuses to install a second copy.

  --copy    copy the files instead of linking them (updates then need another install)
  --force   replace an existing WEBUI_DIR/extensions/${EXTENSION_NAME} that is not ours

Without this command: link or copy python-shim/ to WEBUI_DIR/extensions/${EXTENSION_NAME} and
start \`latent-bridge serve\` yourself (or set the sidecar URL in Settings > Latent bridge).`;

export interface SidecarLocation {
  /** The sidecar's entry point, started as `node <sidecar> serve --host H --port P`. */
  readonly sidecar: string;
  /** The Node binary that ran this command. */
  readonly node: string;
  /** Extra arguments for `serve`, for users to edit (e.g. ["--models", "/data/latents"]). */
  readonly serve_args: readonly string[];
}

type Existing = 'none' | 'our-link' | 'our-copy' | 'repository' | 'foreign';

/** A folder the webui would load as latent-bridge: the repository itself, or python-shim/ (a copy or a link). */
function holdsExtension(dir: string): boolean {
  return existsSync(path.join(dir, 'python-shim', PACKAGE, '__init__.py')) || existsSync(path.join(dir, PACKAGE, '__init__.py'));
}

function classify(target: string, shimDir: string): Existing {
  let stat;
  try {
    stat = lstatSync(target);
  } catch {
    return 'none';
  }
  if (stat.isSymbolicLink()) {
    const pointsAt = path.resolve(path.dirname(target), readlinkSync(target));
    return existsSync(pointsAt) && realpathSync(pointsAt) === realpathSync(shimDir) ? 'our-link' : 'foreign';
  }
  if (!stat.isDirectory()) return 'foreign';
  // A copy made by this command carries the package and the location file.
  if (existsSync(path.join(target, PACKAGE)) && existsSync(path.join(target, LOCATION_FILE))) return 'our-copy';
  return existsSync(path.join(target, 'python-shim', PACKAGE)) ? 'repository' : 'foreign';
}

/** The webui would load both and use one: any other folder of WEBUI/extensions that holds the extension is in the way. */
function checkNoOtherInstall(extensions: string, target: string): void {
  let names: string[];
  try {
    names = readdirSync(extensions);
  } catch {
    return;
  }
  const other = names.map((name) => path.join(extensions, name)).find((dir) => dir !== target && holdsExtension(dir));
  if (other !== undefined) {
    throw new BridgeError(
      'bad_request',
      `${other} holds latent-bridge already (installed from the webui's Extensions tab, or by hand), and the webui would load it twice; ` +
        'keep that one (it needs no install-extension), or delete it and run this again',
    );
  }
}

function previousServeArgs(file: string): readonly string[] {
  try {
    const recorded = JSON.parse(readFileSync(file, 'utf8')) as Partial<SidecarLocation>;
    return Array.isArray(recorded.serve_args) ? recorded.serve_args.map(String) : [];
  } catch {
    return [];
  }
}

function checkWebui(webuiDir: string): void {
  if (!existsSync(webuiDir)) throw new BridgeError('bad_request', `${webuiDir} does not exist`);
  if (!WEBUI_MARKERS.some((name) => existsSync(path.join(webuiDir, name)))) {
    throw new BridgeError(
      'bad_request',
      `${webuiDir} does not look like a webui folder (no ${WEBUI_MARKERS.join(' or ')}); give the folder of Automatic1111, Forge or reForge`,
    );
  }
}

export interface InstallOptions {
  readonly copy: boolean;
  readonly force: boolean;
  /** The extension folder to install; python-shim/ of this checkout unless a test says otherwise. */
  readonly shimDir?: string;
}

export async function installExtension(webuiDir: string, options: InstallOptions): Promise<{ target: string; linked: boolean; replaced: Existing }> {
  const shimDir = options.shimDir ?? SHIM_DIR;
  const root = path.resolve(webuiDir);
  checkWebui(root);
  const extensions = path.join(root, 'extensions');
  const target = path.join(extensions, EXTENSION_NAME);
  const existing = classify(target, shimDir);
  if (existing === 'repository' && !options.force) {
    throw new BridgeError(
      'bad_request',
      `${target} is latent-bridge installed from the webui's Extensions tab (a clone of the repository), which sets up its sidecar itself and needs no install-extension; pass --force to replace it with this checkout's`,
    );
  }
  if (existing === 'foreign' && !options.force) {
    throw new BridgeError('bad_request', `${target} already exists and is not this latent-bridge; move it away or pass --force to replace it`);
  }
  checkNoOtherInstall(extensions, target);
  const locationFile = path.join(options.copy ? target : shimDir, LOCATION_FILE);
  // Serve arguments a user added survive an update; the rest is this machine's, written anew.
  const serveArgs = existing === 'our-link' || existing === 'our-copy' ? previousServeArgs(path.join(target, LOCATION_FILE)) : [];
  await mkdir(extensions, { recursive: true });
  if (existing !== 'none') await rm(target, { recursive: true, force: true });

  if (options.copy) {
    await cp(shimDir, target, { recursive: true, filter: (source) => !NOT_COPIED.has(path.basename(source)) });
  } else {
    // 'junction' makes the link without admin rights on Windows; elsewhere the type is ignored.
    await symlink(shimDir, target, 'junction');
  }
  const location: SidecarLocation = { sidecar: SIDECAR_ENTRY, node: process.execPath, serve_args: serveArgs };
  // A link shares python-shim/ with this checkout, so the file lands there (git ignores it).
  await writeFile(locationFile, `${JSON.stringify(location, null, 2)}\n`);
  return { target, linked: !options.copy, replaced: existing };
}

export const command: Command = {
  summary: 'install the webui extension into an Automatic1111 / Forge / reForge folder',
  usage,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { copy: { type: 'boolean' }, force: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1) throw new BridgeError('bad_request', `give exactly one WEBUI_DIR\n\n${usage}`);
    const result = await installExtension(positionals[0], { copy: values.copy === true, force: values.force === true });
    const how = result.linked ? `linked to ${SHIM_DIR}` : `copied from ${SHIM_DIR}`;
    console.log(`${result.replaced === 'none' ? 'installed' : 'updated'} ${result.target} (${how})`);
    console.log(`the extension starts the sidecar with ${process.execPath} ${SIDECAR_ENTRY} when it is not running`);
    console.log('restart the webui; then pick "Latent (latent-bridge)" as hires upscaler, and "Latent bridge" as live preview method in Settings');
    return 0;
  },
};
