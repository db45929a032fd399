import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { buildNetwork } from '../src/networks/network.ts';
import { Runtime, type LoadedNetwork } from '../src/runtime.ts';
import { readSafetensors } from '../src/safetensors.ts';
import { conformanceCase, conformanceIO, countOutOfTolerance, seededData, weightsPath } from './support/conformance.ts';

let runtime: Runtime;
let interposer: LoadedNetwork;

beforeAll(async () => {
  runtime = await Runtime.create({ device: 'cpu' });
  const c = conformanceCase('interposer-xl-to-v1');
  interposer = await runtime.load(buildNetwork('interposer', await readSafetensors(weightsPath(c)), 1, c.weights));
});

afterAll(() => runtime.close());

describe('the runtime', () => {
  it('runs networks off the event loop: timers fire while a large input computes', async () => {
    // A 256x256 interposer run takes hundreds of milliseconds even on a fast machine.
    let done = false;
    const running = interposer.run({ shape: [1, 4, 256, 256], data: seededData(4 * 256 * 256, 1) }).then(() => (done = true));
    await sleep(5);
    expect(done).toBe(false);
    await running;
  });

  it('leaves the caller its input: what goes to the runtime thread is a copy', async () => {
    const data = seededData(4 * 8 * 8, 2);
    const before = data.slice();
    await interposer.run({ shape: [1, 4, 8, 8], data });
    expect(data).toEqual(before);
  });

  it('survives the loss of its thread: what waited fails with internal, the next run works in a new one', async () => {
    const { input, output } = await conformanceIO(conformanceCase('interposer-xl-to-v1'));
    const lost = interposer.run({ shape: [1, 4, 256, 256], data: seededData(4 * 256 * 256, 3) });
    await runtime.close();
    const error = await lost.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).code).toBe('internal');
    const again = await interposer.run(input);
    expect(countOutOfTolerance(again.data, output.data)).toBe(0);
  });

  it('says which provider it runs on, and why auto settled for the CPU', async () => {
    const auto = await Runtime.create({ device: 'auto' });
    try {
      if (auto.device === 'cpu') expect(auto.note).toMatch(/^no GPU provider works here \(/);
      else expect(['cuda', 'dml', 'webgpu']).toContain(auto.device);
    } finally {
      await auto.close();
    }
    await expect(Runtime.create({ device: 'dml' })).rejects.toThrow(process.platform === 'win32' ? /dml/ : /DirectML is for Windows.*--device cpu or auto/);
  });
});
