import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Writes `data` to a file of its own beside `file` and renames it into place: whoever reads
 * `file` (another process, the next start after a crash) sees the old content or the new one,
 * never half of it. A failed write leaves nothing behind. The folder must exist.
 */
export async function writeFileAtomically(file: string, data: string | Uint8Array): Promise<void> {
  const staging = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
  try {
    await writeFile(staging, data);
    await rename(staging, file);
  } catch (error) {
    await rm(staging, { force: true });
    throw error;
  }
}
