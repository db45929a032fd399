import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isolatedEnv, REPO_ROOT, runServeToExit, spawnServe, type ServeProcess } from './support/server-process.ts';

const started: { kill: () => void }[] = [];
afterEach(() => {
  for (const process of started.splice(0)) process.kill();
});

/** Whether anything accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls until the port is free; a loaded CI machine gets several seconds, an orphan never frees it. */
async function released(port: number, withinMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (!(await listening(port))) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

/** Starts a command line and waits for the sidecar's "listening on" line in its output. */
function startUntilListening(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ pid: number; port: number; output: () => string }> {
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push({ kill: () => child.kill('SIGKILL') });
  let output = '';
  return new Promise((resolve, reject) => {
    const read = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) resolve({ pid: child.pid as number, port: Number(match[1]), output: () => output });
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening:\n${output}`)));
  });
}

describe('the sidecar as a process', () => {
  it('npm start stops when npm is told to stop: no orphan keeps the port', async () => {
    const npm = await startUntilListening('npm', ['start', '--silent'], isolatedEnv({ LATENT_BRIDGE_PORT: '0', LATENT_BRIDGE_DEVICE: 'cpu' }));
    expect(await listening(npm.port)).toBe(true);
    process.kill(npm.pid, 'SIGTERM');
    expect(await released(npm.port)).toBe(true);
  });

  it('with --exit-with-parent, stops when the process that started it dies without a word', async () => {
    // `; :` keeps the shell from replacing itself with node, so the shell is the parent that dies.
    const shell = await startUntilListening('sh', ['-c', 'node bin/latent-bridge.js serve --port 0 --device cpu --exit-with-parent; :'], isolatedEnv());
    process.kill(shell.pid, 'SIGKILL');
    expect(await released(shell.port)).toBe(true);
  });

  it('says in one line that another latent-bridge already serves the port, without a stack trace', async () => {
    const first: ServeProcess = await spawnServe(['--port', '0', '--device', 'cpu'], isolatedEnv());
    started.push({ kill: () => first.child.kill('SIGKILL') });
    const { code, output } = await runServeToExit(['--port', String(first.port), '--device', 'cpu'], isolatedEnv());
    expect(code).toBe(1);
    expect(output.trim().split('\n')).toEqual([`latent-bridge serve: another latent-bridge is already serving on ${first.port}: use it, or choose --port`]);
  });

  it('says in one line that another program holds the port', async () => {
    const blocker = net.createServer((socket) => socket.end('not http\r\n\r\n'));
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    started.push({ kill: () => blocker.close() });
    const port = (blocker.address() as net.AddressInfo).port;
    const { code, output } = await runServeToExit(['--port', String(port), '--device', 'cpu'], isolatedEnv());
    expect(code).toBe(1);
    expect(output.trim().split('\n')).toEqual([`latent-bridge serve: port ${port} on 127.0.0.1 is in use by another program: stop it, or choose --port`]);
  });
});
