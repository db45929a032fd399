import { parseArgs } from 'node:util';
import { hardeningBench } from './hardening.ts';
import { modelStoreBench } from './model-store.ts';
import { networksBench } from './networks.ts';
import { shimBench } from './shim.ts';
import { transportBench } from './transport.ts';
import type { BenchGroup, BenchResult } from './types.ts';

/**
 * `npm run bench [-- --json] [-- --rounds N] [-- --only GROUP[:TEXT]]`: every speed target of the
 * project, each measured side by side with its baseline in this one run. `--only networks:TAESD`
 * keeps the cases of a group whose names contain TEXT. Prints a table; with --json the last line
 * is `{"cases":[{"name","ms","baseline_ms","ratio",...}]}` (`unit` says when ms is not milliseconds).
 */
const GROUPS: Readonly<Record<string, BenchGroup>> = {
  networks: networksBench,
  transport: transportBench,
  shim: shimBench,
  hardening: hardeningBench,
  'model-store': modelStoreBench,
};

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, rounds: { type: 'string' }, only: { type: 'string', multiple: true } },
});
const rounds = Number(values.rounds ?? 3);
const selected = values.only ?? Object.keys(GROUPS);

const results: BenchResult[] = [];
for (const only of selected) {
  const [name, caseText = ''] = only.split(/:(.*)/s);
  const group = GROUPS[name];
  if (group === undefined) throw new Error(`unknown bench group ${name}; known: ${Object.keys(GROUPS).join(', ')}`);
  console.error(`running ${only} (${rounds} rounds)...`);
  const wanted = (caseName: string) => caseName.includes(caseText);
  results.push(...(await group({ rounds, wanted })).filter((r) => wanted(r.name)));
}

const table = results.map((r) => ({
  case: r.name,
  value: r.ms.toFixed(3),
  baseline: r.baseline_ms.toFixed(3),
  unit: r.unit ?? 'ms',
  ratio: r.ratio.toFixed(3),
  target: r.target,
  met: r.ok ? 'yes' : 'NO',
}));
console.table(table);
if (values.json) console.log(JSON.stringify({ cases: results }));
