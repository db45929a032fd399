import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Environment for a sidecar subprocess that can never reach the network or the user's caches. */
export function isolatedEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const home = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-env-'));
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: path.join(home, 'hf'), XDG_STATE_HOME: path.join(home, 'state'), HF_HUB_OFFLINE: '1' };
  for (const key of Object.keys(env)) if (key.startsWith('LATENT_BRIDGE_')) delete env[key];
  return { ...env, ...extra };
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly firstLine: string;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

/** Runs `latent-bridge serve ARGS` and waits for its first line, which carries the port. */
export function spawnServe(args: string[], env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, ['bin/latent-bridge.js', 'serve', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^listening on http:\/\/[^\s]+:(\d+)\n/.exec(stdout);
      if (match) resolve({ child, port: Number(match[1]), firstLine: stdout.split('\n')[0], output: () => stdout + stderr, exited });
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code} before listening:\n${stdout}${stderr}`)));
  });
}

/** Runs `latent-bridge serve ARGS` expecting it to fail, returning its exit code and output. */
export function runServeToExit(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['bin/latent-bridge.js', 'serve', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}
