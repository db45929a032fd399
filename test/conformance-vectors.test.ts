import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFORMANCE_DIR } from './support/conformance.ts';

/** The shared copy the vectors come from, beside the repository on developer and CI machines. */
const SHARED_DIR = path.resolve(CONFORMANCE_DIR, '../../../shared/conformance');
const SUMS_FILE = 'SHA256SUMS';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .filter((name) => name !== SUMS_FILE)
    .sort();
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe("the repository's copy of the conformance vectors", () => {
  it('matches its SHA256SUMS, file for file', () => {
    const listed = new Map(
      readFileSync(path.join(CONFORMANCE_DIR, SUMS_FILE), 'utf8')
        .trim()
        .split('\n')
        .map((line) => {
          const [digest, name] = line.split(/\s+/);
          return [name.replace(/^\.\//, ''), digest] as const;
        }),
    );
    expect(filesUnder(CONFORMANCE_DIR)).toEqual([...listed.keys()].sort());
    for (const [name, digest] of listed) expect(sha256(path.join(CONFORMANCE_DIR, name)), name).toBe(digest);
  });

  it('is identical to ../shared/conformance where that exists (a GitHub clone has only the sums above)', () => {
    if (!existsSync(SHARED_DIR)) return;
    expect(filesUnder(CONFORMANCE_DIR)).toEqual(filesUnder(SHARED_DIR));
    for (const name of filesUnder(SHARED_DIR)) {
      expect(readFileSync(path.join(CONFORMANCE_DIR, name)).equals(readFileSync(path.join(SHARED_DIR, name))), name).toBe(true);
    }
  });
});
