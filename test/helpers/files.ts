/** Waiting for a file to reach a state: woken by the directory's change events, never by sleeps. */
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Resolves with `check(text)` once the file exists and `check` returns a value
 * other than undefined; re-checked on every change in its directory (atomic
 * writes rename into it). Rejects after `timeoutMs` with the last content seen.
 */
export function waitForFile<T>(
  file: string,
  check: (text: string) => T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let last = '(absent)';
    let done = false;
    const finish = (error: Error | null, value?: T) => {
      if (done) return;
      done = true;
      watcher.close();
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value as T);
    };
    const probe = () => {
      readFile(file, 'utf8').then(
        (text) => {
          last = text;
          const value = check(text);
          if (value !== undefined) finish(null, value);
        },
        () => undefined, // not there yet: the next event tells
      );
    };
    const watcher = watch(path.dirname(file), probe);
    const timer = setTimeout(
      () => finish(new Error(`${file} did not reach the expected state; last: ${last}`)),
      timeoutMs,
    );
    probe();
  });
}
