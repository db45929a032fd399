import { parseArgs } from 'node:util';
import { BridgeError } from '../errors.ts';
import { formatBytes } from '../console-log.ts';
import { MODEL_SPECS, specsNamed } from '../store/registry.ts';
import type { ModelStatus, ModelStore } from '../store/store.ts';
import { createModelStore } from './engine-setup.ts';
import type { Command } from './command.ts';
import { onStopSignal, signalExitCode, type StopSignal } from './stop-signal.ts';

const usage = `usage: latent-bridge models list [--json]
       latent-bridge models pull NAME... | --all
       latent-bridge models verify [NAME...] [--json]
       latent-bridge models forget NAME...

Shows, downloads and checks city96's interposer and upscaler weights. Lookup order: the
--models folders, LATENT_BRIDGE_MODELS, the package's models/ folder (each flat or under
v4.0/), the ComfyUI install of --comfyui, the Hugging Face cache (HF_HUB_CACHE / HF_HOME,
shared with Python tools), then a download from the hub (HF_ENDPOINT for a mirror, HF_TOKEN
for a token) into that cache. A download must have the sha256 latent-bridge pins for the
file or, where it pins none, the one the file's first verified download had; \`forget\`
drops that record (after the file really changed upstream). SIGINT or SIGTERM stops a pull;
the partial file is kept and the next pull resumes it.

  --models DIR        also look for weight files in DIR (repeatable)
  --comfyui DIR       also use the weight files of the ComfyUI install in DIR (LATENT_BRIDGE_COMFYUI too)
  --offline           never use the network (HF_HUB_OFFLINE=1 does the same)
  --all               pull: every known model
  --json              list/verify: print JSON instead of a table`;

const OPTIONS = {
  models: { type: 'string', multiple: true },
  comfyui: { type: 'string' },
  offline: { type: 'boolean' },
  all: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

function table(statuses: readonly ModelStatus[]): string {
  const header = ['MODEL', 'PRESENT', 'VERIFIED', 'SIZE', 'SOURCE', 'PATH'];
  const rows = statuses.map((s) => [
    s.name,
    s.present ? 'yes' : 'no',
    s.present ? (s.verified ? 'yes' : 'no') : '-',
    s.size !== undefined ? formatBytes(s.size) : '-',
    s.source ?? '-',
    s.path ?? '-',
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)));
  return [header, ...rows].map((cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** What to do next, once, instead of the same advice on every row. */
function advice(store: ModelStore, statuses: readonly ModelStatus[]): string[] {
  const lines: string[] = [];
  const missing = statuses.filter((s) => !s.present).length;
  if (missing > 0) {
    lines.push(
      store.options.offline
        ? `${missing} of ${statuses.length} models are not on disk and downloads are off: copy the files into ${store.options.modelDirs[0]} (names in \`latent-bridge models list --json\`, see docs/models.md)`
        : `${missing} of ${statuses.length} models are not on disk: \`latent-bridge models pull --all\` (or NAME...) downloads them`,
    );
  }
  const unchecked = statuses.filter((s) => s.present && !s.verified).length;
  if (unchecked > 0) lines.push(`${unchecked} present models are not verified yet: \`latent-bridge models verify\` checks their sha256`);
  return lines;
}

function whereItLooks(store: ModelStore): string {
  const { modelDirs, cacheDir, hubUrl, offline } = store.options;
  return [
    `models folders: ${modelDirs.join(', ')}`,
    `hub cache:      ${cacheDir}`,
    `hub:            ${offline ? 'offline (no downloads)' : hubUrl}`,
  ].join('\n');
}

export const command: Command = {
  summary: 'list, download (pull) and verify the interposer and upscaler weights',
  usage,
  async run(args) {
    const { values, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
    const [action, ...names] = positionals;
    const store = createModelStore(values);

    if (action === 'list') {
      if (names.length > 0) throw new BridgeError('bad_request', `models list takes no names\n\n${usage}`);
      const statuses = await store.list();
      console.log(values.json === true ? JSON.stringify(statuses, null, 2) : [table(statuses), '', ...advice(store, statuses), whereItLooks(store)].join('\n'));
      return 0;
    }

    if (action === 'pull') {
      if ((values.all === true) === (names.length > 0)) throw new BridgeError('bad_request', `give model names or --all\n\n${usage}`);
      const specs = values.all === true ? MODEL_SPECS : specsNamed(names);
      let stoppedBy: StopSignal | undefined;
      // The store says which downloads the signal cancelled and what each one keeps.
      const stopListening = onStopSignal((signal) => {
        stoppedBy = signal;
        void store.close();
      });
      let failed = 0;
      try {
        for (const spec of specs) {
          if (stoppedBy !== undefined) break;
          try {
            const [status] = await store.pull([spec]);
            console.log(`${spec.name}: ${status.path} (${status.source}${status.verified ? ', sha256 verified' : ''})`);
          } catch (error) {
            if (!(error instanceof BridgeError)) throw error;
            if (stoppedBy !== undefined) break;
            failed += 1;
            console.error(`${spec.name}: ${error.message}`);
          }
        }
      } finally {
        stopListening();
      }
      if (stoppedBy !== undefined) {
        console.error(`${stoppedBy}: pull stopped; run the same command again to resume`);
        return signalExitCode(stoppedBy);
      }
      if (failed > 0) console.error(`${failed} of ${specs.length} models could not be pulled`);
      return failed > 0 ? 1 : 0;
    }

    if (action === 'verify') {
      const results = await store.verify(names.length > 0 ? specsNamed(names) : MODEL_SPECS);
      const mismatches = results.filter((r) => r.outcome === 'mismatch').length;
      if (values.json === true) console.log(JSON.stringify(results.map((r) => ({ ...r.status, outcome: r.outcome })), null, 2));
      else {
        for (const { status, outcome } of results) {
          if (outcome === 'absent') continue;
          console.log(`${status.name}: ${outcome === 'verified' ? 'ok' : outcome}${status.reason !== undefined ? ` - ${status.reason}` : ''}`);
          console.log(`    ${status.path}`);
        }
        const counts = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
        console.log(`${counts('verified')} verified, ${mismatches} damaged, ${counts('unchecked')} without a reference sha256, ${counts('absent')} not on disk`);
      }
      return mismatches > 0 ? 1 : 0;
    }

    if (action === 'forget') {
      if (names.length === 0) throw new BridgeError('bad_request', `give the model names whose recorded sha256 to forget\n\n${usage}`);
      for (const { spec, forgotten, pinned } of await store.forgetTrusted(specsNamed(names))) {
        if (pinned) console.log(`${spec.name}: latent-bridge pins its sha256 (${spec.sha256}); there is nothing to forget`);
        else if (forgotten === undefined) console.log(`${spec.name}: no sha256 was recorded for it; the next verified download will be trusted`);
        else console.log(`${spec.name}: forgot sha256 ${forgotten.sha256} (trusted ${forgotten.trustedAt.slice(0, 10)}, from ${forgotten.hubUrl}); the next verified download will be trusted`);
      }
      return 0;
    }

    throw new BridgeError('bad_request', action === undefined ? `say what to do: list, pull, verify or forget\n\n${usage}` : `unknown action "${action}"\n\n${usage}`);
  },
};
