import { describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { FairScheduler } from '../src/server/scheduler.ts';

/** A task that finishes when the test says so, recording the order tasks start in. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('FairScheduler', () => {
  it('takes turns between clients instead of first come first served', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 10, maxQueued: 100 });
    const started: string[] = [];
    const first = gate();
    const task = (name: string, wait?: Promise<void>) => async () => {
      started.push(name);
      await wait;
      return name;
    };
    const all = [
      scheduler.submit('a', task('a0', first.opened)),
      scheduler.submit('a', task('a1')),
      scheduler.submit('a', task('a2')),
      scheduler.submit('a', task('a3')),
      scheduler.submit('b', task('b0')),
      scheduler.submit('c', task('c0')),
      scheduler.submit('b', task('b1')),
    ];
    expect(scheduler.running).toBe(1);
    expect(scheduler.queued).toBe(6);
    first.open();
    expect(await Promise.all(all)).toEqual(['a0', 'a1', 'a2', 'a3', 'b0', 'c0', 'b1']);
    expect(started).toEqual(['a0', 'a1', 'b0', 'c0', 'a2', 'b1', 'a3']);
    expect([scheduler.running, scheduler.queued]).toEqual([0, 0]);
  });

  it('runs up to `concurrency` at once', async () => {
    const scheduler = new FairScheduler({ concurrency: 2, maxPerClient: 10, maxQueued: 100 });
    const g = gate();
    const runs = [1, 2, 3].map((i) => scheduler.submit(`c${i}`, () => g.opened.then(() => i)));
    expect([scheduler.running, scheduler.queued]).toEqual([2, 1]);
    g.open();
    expect(await Promise.all(runs)).toEqual([1, 2, 3]);
  });

  it('answers busy past the per-client and the global limit, and frees slots when tasks end', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 2, maxQueued: 2 });
    const g = gate();
    const a = [scheduler.submit('a', () => g.opened), scheduler.submit('a', () => g.opened)];
    expect(() => scheduler.submit('a', async () => 0)).toThrow(expect.objectContaining({ code: 'busy' }));
    const b = scheduler.submit('b', () => g.opened);
    expect(() => scheduler.submit('c', async () => 0)).toThrow(expect.objectContaining({ code: 'busy', message: expect.stringMatching(/waiting/) }));
    g.open();
    await Promise.all([...a, b]);
    expect(await scheduler.submit('a', async () => 'again')).toBe('again');
  });

  it('passes task errors to the caller and keeps going', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 2, maxQueued: 2 });
    await expect(scheduler.submit('a', async () => Promise.reject(new BridgeError('model_unavailable', 'x')))).rejects.toMatchObject({ code: 'model_unavailable' });
    expect(await scheduler.submit('a', async () => 1)).toBe(1);
  });

  it('drops the waiting tasks of a client that left; drain waits for running ones', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 5, maxQueued: 10 });
    const g = gate();
    const running = scheduler.submit('a', () => g.opened.then(() => 'done'));
    const waiting = scheduler.submit('a', async () => 'never');
    const other = scheduler.submit('b', async () => 'never either');
    scheduler.cancelClient('a', new BridgeError('internal', 'gone'));
    await expect(waiting).rejects.toMatchObject({ message: 'gone' });
    const drained = scheduler.drain(new BridgeError('busy', 'shutting down'));
    await expect(other).rejects.toMatchObject({ code: 'busy' });
    g.open();
    await drained;
    expect(await running).toBe('done');
  });

  it('counts a task against the limits while it gets ready, so requests waiting for a download cannot pile up', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 2, maxQueued: 3 });
    const loading = gate();
    let prepared = 0;
    const prepare = () => {
      prepared++;
      return loading.opened;
    };
    const a = [scheduler.submit('a', async () => 'a0', prepare), scheduler.submit('a', async () => 'a1', prepare)];
    expect(scheduler.queued).toBe(2);
    expect(() => scheduler.submit('a', async () => 'a2', prepare)).toThrow(expect.objectContaining({ code: 'busy', message: expect.stringMatching(/limit 2/) }));
    const b = scheduler.submit('b', async () => 'b0', prepare);
    expect(() => scheduler.submit('c', async () => 'c0', prepare)).toThrow(expect.objectContaining({ code: 'busy', message: expect.stringMatching(/waiting/) }));
    // A refused task never starts getting ready.
    expect(prepared).toBe(3);
    loading.open();
    expect(await Promise.all([...a, b])).toEqual(['a0', 'a1', 'b0']);
    expect([scheduler.running, scheduler.queued]).toEqual([0, 0]);
  });

  it('passes a failure to get ready to the caller, without running the task', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 1, maxQueued: 1 });
    let ran = false;
    const failed = scheduler.submit('a', async () => (ran = true), () => Promise.reject(new BridgeError('model_unavailable', 'offline')));
    await expect(failed).rejects.toMatchObject({ code: 'model_unavailable' });
    expect(ran).toBe(false);
    expect(await scheduler.submit('a', async () => 'next')).toBe('next');
  });

  it('never runs a task whose client left while it was getting ready', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 2, maxQueued: 2 });
    const loading = gate();
    let ran = false;
    const task = scheduler.submit('a', async () => (ran = true), () => loading.opened);
    scheduler.cancelClient('a', new BridgeError('internal', 'gone'));
    await expect(task).rejects.toMatchObject({ message: 'gone' });
    expect(scheduler.queued).toBe(0);
    loading.open();
    await loading.opened;
    expect(await scheduler.submit('a', async () => 'after')).toBe('after');
    expect(ran).toBe(false);
  });

  it('once draining, answers busy to new tasks and to tasks still getting ready', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 5, maxQueued: 10 });
    const g = gate();
    const loading = gate();
    let ran = false;
    const running = scheduler.submit('a', () => g.opened.then(() => 'done'));
    const getting = scheduler.submit('b', async () => (ran = true), () => loading.opened);
    const drained = scheduler.drain(new BridgeError('busy', 'shutting down'));
    await expect(getting).rejects.toMatchObject({ code: 'busy' });
    expect(() => scheduler.submit('c', async () => 'late')).toThrow(expect.objectContaining({ code: 'busy' }));
    loading.open();
    g.open();
    await drained;
    expect(await running).toBe('done');
    expect(ran).toBe(false);
  });

  it('runs background work only when no request waits, and a request waits for at most the one running', async () => {
    const scheduler = new FairScheduler({ concurrency: 1, maxPerClient: 10, maxQueued: 100 });
    const started: string[] = [];
    const first = gate();
    const decoding = gate();
    const task = (name: string, wait?: Promise<void>) => async () => {
      started.push(name);
      await wait;
      return name;
    };
    const work = [scheduler.submit('a', task('request 1', first.opened)), scheduler.submitBackground(task('decode 1', decoding.opened))];
    work.push(scheduler.submit('b', task('request 2')));
    expect(started).toEqual(['request 1']);
    first.open();
    await work[2];
    // Request 2 came after decode 1 but went first; decode 1 then took the slot.
    expect(started).toEqual(['request 1', 'request 2', 'decode 1']);
    work.push(scheduler.submit('a', task('request 3')), scheduler.submitBackground(task('decode 2')));
    await Promise.resolve();
    expect(started).toEqual(['request 1', 'request 2', 'decode 1']);
    decoding.open();
    await Promise.all(work);
    expect(started).toEqual(['request 1', 'request 2', 'decode 1', 'request 3', 'decode 2']);
    // Background work counts against no client's limits, and is refused once draining.
    expect([scheduler.running, scheduler.queued]).toEqual([0, 0]);
    await scheduler.drain(new BridgeError('busy', 'closing'));
    await expect(scheduler.submitBackground(task('late'))).rejects.toThrow(/closing|shutting down/);
  });
});
