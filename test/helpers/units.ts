/**
 * The deployment as deploy/ lays it out, on a test directory: the manager as
 * root but limited to its unit's capability bounding set (read from
 * deploy/token-shadow-manager.service) with no new privileges, the API as
 * `nobody` in the deployment's group with no capabilities at all (its unit's
 * empty set). The tests run as root, which hides what a unit forbids; this
 * puts it back. `ProtectProc=invisible` is not reproduced: without
 * CAP_SYS_PTRACE the manager cannot read the API's /proc/PID/fd anyway.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { HarnessOptions } from '../../harness/daemons.js';
import { NOBODY, nobodysCopy } from './nobody.js';
import { CHECKOUT } from './package-copy.js';

/** The capabilities a unit file bounds its service to, as setpriv names them (`chown`). */
export function unitCapabilities(unit: string): string[] {
  const text = readFileSync(path.join(CHECKOUT, 'deploy', unit), 'utf8');
  const lines = text.split('\n').filter((l) => l.startsWith('CapabilityBoundingSet='));
  if (lines.length !== 1) throw new Error(`${unit}: expected one CapabilityBoundingSet= line`);
  return (lines[0] as string)
    .slice('CapabilityBoundingSet='.length)
    .split(/\s+/)
    .filter((cap) => cap.length > 0)
    .map((cap) => cap.replace(/^CAP_/, '').toLowerCase());
}

/** setpriv's arguments for a process bounded to `caps` (none: no capability at all). */
function bounded(caps: string[]): string[] {
  const set = ['-all', ...caps.map((cap) => `+${cap}`)].join(',');
  return [`--bounding-set=${set}`, '--inh-caps=-all', '--no-new-privs'];
}

/** A group id no entry of /etc/group uses: the deployment's shared group. */
export function unusedGroupId(groupFile = '/etc/group'): number {
  const used = new Set(
    readFileSync(groupFile, 'utf8')
      .split('\n')
      .map((line) => Number(line.split(':')[2])),
  );
  for (let gid = 61_000; gid < 65_000; gid++) if (!used.has(gid)) return gid;
  throw new Error('no free group id');
}

export interface UnitLayout {
  /** The shared group (the unit's token-shadow). */
  gid: number;
  /** For startDeployment/startDaemons: who runs each daemon, and from where. */
  harness: HarnessOptions;
  /** setpriv's arguments that make a child the API's user in the shared group. */
  asApiUser: string[];
}

/**
 * The harness options for the unit layout, or why it cannot run here (not
 * root, no setpriv, no package copy nobody can read). The test directory must
 * be searchable by nobody.
 */
export function unitLayout(): UnitLayout | string {
  const copy = nobodysCopy();
  if (typeof copy === 'string') return copy;
  const gid = unusedGroupId();
  const asApiUser = [
    'setpriv',
    `--reuid=${NOBODY}`,
    `--regid=${gid}`,
    '--clear-groups',
    ...bounded(unitCapabilities('token-shadow-api.service')),
  ];
  const manager = ['setpriv', ...bounded(unitCapabilities('token-shadow-manager.service'))];
  return {
    gid,
    asApiUser,
    harness: {
      packageRoot: copy.root,
      managerArgs: ['--group', String(gid)],
      prefixOf: (name) => (name === 'manager' ? manager : asApiUser),
    },
  };
}
