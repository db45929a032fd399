import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { INPUT_NAME, OUTPUT_NAME } from './networks/network-graph.ts';
import type { ThreadReply, ThreadRequest } from './runtime-thread.ts';

/**
 * The runtime thread: every onnxruntime session lives and runs here. onnxruntime-node runs a
 * session synchronously on the thread that calls it, so on the main thread one large upscale or
 * a CPU TAESD decode would stop the server from answering anyone for seconds.
 */

function sessionOptions(device: string, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [device],
    // 'all' lets ORT rewrite convolutions into its blocked NCHWc layout: 1.5-2x faster on CPU (runtime-notes §2).
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    // Spinning threads would steal CPU from the webui between requests, for no measurable gain.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
    // A memory pattern is planned per input shape and allocated beside the arena's own chunks: a
    // 1024-pixel TAESD decode peaked at 2.0 GB with it and 1.2 GB without, at the same speed.
    enableMemPattern: false,
  };
}

const sessions = new Map<number, ort.InferenceSession>();
let nextSession = 1;

async function handle(request: ThreadRequest): Promise<{ reply: ThreadReply; transfer: ArrayBuffer[] }> {
  switch (request.type) {
    case 'load': {
      const session = await ort.InferenceSession.create(request.onnx, sessionOptions(request.device, request.threads));
      sessions.set(nextSession, session);
      return { reply: { id: request.id, ok: true, session: nextSession++ }, transfer: [] };
    }
    case 'run': {
      const session = sessions.get(request.session);
      if (session === undefined) throw new Error(`no session ${request.session} in the runtime thread`);
      const result = (await session.run({ [INPUT_NAME]: new ort.Tensor('float32', request.data, [...request.shape]) }))[OUTPUT_NAME];
      // A copy of our own, so its buffer can be handed over to the main thread whatever ORT does with its own.
      const data = new Float32Array(result.data as Float32Array);
      const shape = [...result.dims];
      result.dispose();
      return { reply: { id: request.id, ok: true, data, shape }, transfer: [data.buffer as ArrayBuffer] };
    }
    case 'release': {
      await sessions.get(request.session)?.release();
      sessions.delete(request.session);
      return { reply: { id: request.id, ok: true }, transfer: [] };
    }
  }
}

const port = parentPort;
if (port === null) throw new Error('runtime-worker.ts runs as a worker thread');
port.on('message', (request: ThreadRequest) => {
  handle(request).then(
    ({ reply, transfer }) => port.postMessage(reply, transfer),
    (error: unknown) => port.postMessage({ id: request.id, ok: false, message: error instanceof Error ? error.message : String(error) } satisfies ThreadReply),
  );
});
