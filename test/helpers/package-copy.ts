/**
 * A copy of this checkout's built package in a fresh directory that every user
 * can read: package.json, dist/ and node_modules (hard links: cheap, and the
 * same files), with or without the native addon. Tests that run a child as
 * `nobody` use it so that they do not depend on where the clone lives (a 0700
 * home directory), and the no-addon tests use it to hide the addon honestly:
 * the copy has no build/ and no prebuilds/, so node-gyp-build finds nothing.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './tmp.js';

/** The checkout: this file is dist/test/helpers/package-copy.js. */
export const CHECKOUT = fileURLToPath(new URL('../../../', import.meta.url));

export interface PackageCopy {
  root: string;
  /** A path inside the copy, e.g. `dist/src/cli/tokenctl.js`. */
  file(relative: string): string;
}

export function packageCopy(options: { addon: boolean }): PackageCopy {
  const root = path.join(tempDir('token-shadow-pkg-'), 'token-shadow');
  mkdirSync(root);
  chmodSync(path.dirname(root), 0o755);
  copyFileSync(path.join(CHECKOUT, 'package.json'), path.join(root, 'package.json'));
  execFileSync('cp', ['-R', path.join(CHECKOUT, 'dist'), root]);
  execFileSync('cp', ['-al', path.join(CHECKOUT, 'node_modules'), root]);
  if (options.addon) {
    for (const dir of ['build/Release', 'prebuilds']) {
      const from = path.join(CHECKOUT, dir);
      if (!existsSync(from)) continue;
      mkdirSync(path.dirname(path.join(root, dir)), { recursive: true });
      execFileSync('cp', ['-R', from, path.join(root, dir)]);
    }
  }
  // New directories and copied files: readable by all. The hard-linked files
  // of node_modules keep their own modes (npm writes them 0644 under umask 022).
  execFileSync('find', [root, '-type', 'd', '-exec', 'chmod', 'a+rx', '{}', '+']);
  execFileSync('find', [
    root,
    '-path',
    `${root}/node_modules`,
    '-prune',
    '-o',
    '-type',
    'f',
    '-exec',
    'chmod',
    'a+r',
    '{}',
    '+',
  ]);
  return { root, file: (relative) => path.join(root, relative) };
}
