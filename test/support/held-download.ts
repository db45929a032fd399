import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentProgress } from '../../src/store/download-progress.ts';
import { specsNamed } from '../../src/store/registry.ts';
import { ModelStore } from '../../src/store/store.ts';
import { CONFORMANCE_DIR } from './conformance.ts';
import { FakeHub, hostModel, pinnedTo } from './fake-hub.ts';
import { STAND_INS } from './models-dir.ts';

export interface HeldDownload {
  readonly hub: FakeHub;
  /** Online, with an empty cache: its one model, the v1 x2 upscaler, must come from the hub. */
  readonly store: ModelStore;
  /** Lets the hub send the file. */
  readonly release: () => void;
}

/**
 * A store whose only model downloads from a stand-in hub that holds the bytes back until told,
 * so that requests needing it stay waiting as long as a test wants.
 */
export async function heldDownload(): Promise<HeldDownload> {
  const hub = await FakeHub.start();
  const [realSpec] = specsNamed(['upscaler-v1-x2.0']);
  const weights = readFileSync(path.join(CONFORMANCE_DIR, `${STAND_INS[realSpec.name]}.weights.safetensors`));
  // Downloads must match the registry's pin: the stand-in weights play the pinned file.
  const spec = pinnedTo(realSpec, weights);
  hostModel(hub, spec, weights);
  const release = hub.holdTransfers();
  const work = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-held-'));
  const store = new ModelStore({
    modelDirs: [path.join(work, 'models')],
    hubUrl: hub.url,
    cacheDir: path.join(work, 'hub'),
    stateDir: path.join(work, 'state'),
    offline: false,
    progress: silentProgress,
    registry: [spec],
  });
  return { hub, store, release };
}
