/**
 * Running a child as `nobody` (root ignores file modes, so permission tests
 * need another user). The child cannot read a checkout that lives in a 0700
 * directory, so it runs from a package copy every user can read; when even
 * that is not possible (not root, no setpriv, node_modules files private),
 * the test is skipped with the reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type PackageCopy, packageCopy } from './package-copy.js';

export const NOBODY = 65534;
export const AS_NOBODY = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];

let prepared: PackageCopy | string | undefined;

/** A copy of the package that `nobody` can load, or why there is none. */
export function nobodysCopy(): PackageCopy | string {
  // A copy made inside an earlier test went with that test's temporary directory.
  if (typeof prepared === 'object' && !existsSync(prepared.root)) prepared = undefined;
  prepared ??= prepare();
  return prepared;
}

function prepare(): PackageCopy | string {
  if (process.getuid?.() !== 0) return 'needs root to switch to nobody';
  if (spawnSync('setpriv', ['--version']).error) return 'setpriv is not installed';
  const copy = packageCopy({ addon: true });
  const probe = spawnSync(
    AS_NOBODY[0] as string,
    [...AS_NOBODY.slice(1), process.execPath, copy.file('dist/src/cli/tokenctl.js'), '--help'],
    { encoding: 'utf8' },
  );
  if (probe.status !== 0) {
    const why = (probe.stderr || String(probe.error)).trim().split('\n')[0];
    return `nobody cannot run node or the package copy (${why})`;
  }
  return copy;
}
