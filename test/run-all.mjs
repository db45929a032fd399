#!/usr/bin/env node
// `npm test`: the TypeScript suite (vitest), then the Python suite (pytest with Debian's python3,
// which has python3-torch), then one line with the totals of both.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const reports = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-tests-'));
const vitestReport = path.join(reports, 'vitest.json');
const pytestReport = path.join(reports, 'pytest.xml');
const python = process.env.LATENT_BRIDGE_PYTHON ?? '/usr/bin/python3';
const extra = process.argv.slice(2);

const vitest = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestReport}`, ...extra], { stdio: 'inherit' });
const pytest = spawnSync(python, ['-m', 'pytest', '-q', 'test/python', `--junitxml=${pytestReport}`], { stdio: 'inherit' });

const totals = { passed: 0, failed: 0, skipped: 0 };
try {
  const json = JSON.parse(readFileSync(vitestReport, 'utf8'));
  totals.passed += json.numPassedTests;
  totals.failed += json.numFailedTests + (json.numTotalTestSuites > 0 && json.success === false && json.numFailedTests === 0 ? 1 : 0);
  totals.skipped += json.numPendingTests + json.numTodoTests;
} catch {
  totals.failed += 1;
}
try {
  const xml = readFileSync(pytestReport, 'utf8');
  const suite = /<testsuite\b[^>]*>/.exec(xml)?.[0] ?? '';
  const count = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? 0);
  const failed = count('failures') + count('errors');
  totals.failed += failed;
  totals.skipped += count('skipped');
  totals.passed += count('tests') - failed - count('skipped');
} catch {
  totals.failed += 1;
}

console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exitCode = vitest.status === 0 && pytest.status === 0 && totals.failed === 0 ? 0 : 1;
