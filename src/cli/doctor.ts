/**
 * `tokenctl doctor`: are the deployment's files where the processes expect
 * them, with modes and owners that keep them safe? The dangerous mistakes are
 * writable ones: whoever can write token.shadow, user.cfg or the token
 * database (or its journal) can let themselves in, and whoever can write the
 * generation page can hold a counter still (or set it back) so that removed
 * or rotated tokens stay in the daemons' caches.
 */
import { existsSync, constants as fsConstants, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { GenerationPageError } from '../errors.js';
import { DEFAULT_STALE_MS } from '../files/lock.js';
import { GenerationPage } from '../generations/page.js';
import { PAGE_SIZE } from '../generations/slots.js';
import type { Settings } from '../service/settings.js';
import { groupName, userName } from './names.js';

export type CheckStatus = 'OK' | 'WARN' | 'FAIL';

export interface CheckResult {
  status: CheckStatus;
  name: string;
  path: string;
  detail: string;
}

type Finding = readonly [CheckStatus, string];

/** Mode bits that must not be set, and how bad it is when they are. */
interface Rule {
  bits: number;
  status: CheckStatus;
  why: string;
}

interface Target {
  name: string;
  path: string;
  type: 'directory' | 'file' | 'socket';
  mode: number;
  rules: Rule[];
  /** Bits the deployment's group needs (the API daemon runs in it). */
  groupNeeds: number;
  missing: Finding;
  size?: number;
  /** A deeper look, once the metadata is fine. */
  validate?: (path: string) => Finding;
}

const RANK: Record<CheckStatus, number> = { OK: 0, WARN: 1, FAIL: 2 };

export function worst(statuses: Iterable<CheckStatus>): CheckStatus {
  let result: CheckStatus = 'OK';
  for (const status of statuses) if (RANK[status] > RANK[result]) result = status;
  return result;
}

const octal = (mode: number) => `0${mode.toString(8).padStart(3, '0')}`;

function hasType(stats: Stats, type: Target['type']): boolean {
  if (type === 'directory') return stats.isDirectory();
  if (type === 'socket') return stats.isSocket();
  return stats.isFile();
}

const worldWritable = (what: string): Rule => ({
  bits: 0o002,
  status: 'FAIL',
  why: `world-writable: ${what}`,
});

/** Opens the page read-only, as a reader would, to check its size and magic. */
function validatePage(pagePath: string): Finding {
  try {
    GenerationPage.open(pagePath, { create: false, readOnly: true, pin: false }).close();
    return ['OK', 'magic ok'];
  } catch (error) {
    if (error instanceof GenerationPageError && error.problem === 'permission-denied') {
      return ['WARN', 'cannot open it as this user to check the magic'];
    }
    return ['FAIL', `unusable: ${(error as Error).message}`];
  }
}

function targets(settings: Settings): Target[] {
  const shared = settings.gid !== undefined;
  const pageDir = path.dirname(settings.pagePath);
  const list: Target[] = [
    {
      name: 'config dir',
      path: settings.configDir,
      type: 'directory',
      mode: 0o750,
      rules: [
        worldWritable('anyone can replace user.cfg and token.shadow'),
        { bits: 0o020, status: 'FAIL', why: 'group-writable: the API group can replace files' },
        { bits: 0o005, status: 'WARN', why: 'others can look inside' },
      ],
      groupNeeds: 0o050,
      missing: ['FAIL', 'missing'],
    },
    {
      name: 'user.cfg',
      path: settings.userCfgPath,
      type: 'file',
      mode: 0o640,
      rules: [
        worldWritable('anyone can grant themselves every privilege'),
        { bits: 0o020, status: 'FAIL', why: 'group-writable: the API group can change privileges' },
        { bits: 0o004, status: 'WARN', why: 'world-readable: users and ACLs are visible to all' },
      ],
      groupNeeds: 0o040,
      missing: ['WARN', 'absent: nothing configured yet'],
    },
    {
      name: 'token.shadow',
      path: settings.shadowPath,
      type: 'file',
      mode: shared ? 0o640 : 0o600,
      rules: [
        worldWritable('anyone can replace token hashes'),
        { bits: 0o020, status: 'FAIL', why: 'group-writable: the API group can replace hashes' },
        { bits: 0o004, status: 'FAIL', why: 'world-readable: anyone can read the token hashes' },
      ],
      groupNeeds: 0o040,
      missing: existsSync(settings.tokenDatabasePath)
        ? ['OK', 'absent: the tokens are in the token database']
        : ['WARN', 'absent: no token secrets yet'],
    },
    {
      name: 'token database',
      path: settings.tokenDatabasePath,
      type: 'file',
      mode: shared ? 0o640 : 0o600,
      rules: [
        worldWritable('anyone can replace token hashes'),
        { bits: 0o020, status: 'FAIL', why: 'group-writable: the API group can replace hashes' },
        { bits: 0o004, status: 'FAIL', why: 'world-readable: anyone can read the token hashes' },
      ],
      groupNeeds: 0o040,
      missing: ['OK', 'absent: the tokens are in user.cfg and token.shadow'],
    },
    {
      // PERSIST keeps it between commits. Whoever writes it can plant a "hot" journal that the
      // next writer rolls back into the database; a reader that cannot read it takes it for hot.
      name: 'token database journal',
      path: `${settings.tokenDatabasePath}-journal`,
      type: 'file',
      mode: shared ? 0o640 : 0o600,
      rules: [
        worldWritable('anyone can plant changes the writer rolls back into the database'),
        { bits: 0o020, status: 'FAIL', why: 'group-writable: the API group can plant changes' },
        { bits: 0o004, status: 'FAIL', why: 'world-readable: anyone can read token hashes in it' },
      ],
      groupNeeds: 0o040,
      missing: ['OK', 'absent: no commit yet'],
    },
    {
      name: 'runtime dir',
      path: settings.runtimeDir,
      type: 'directory',
      mode: 0o750,
      rules: [worldWritable('anyone can replace the socket and the page directory')],
      groupNeeds: 0o010,
      missing: ['WARN', 'absent: the manager creates it'],
    },
  ];
  if (pageDir !== settings.configDir && pageDir !== settings.runtimeDir) {
    list.push({
      name: 'page dir',
      path: pageDir,
      type: 'directory',
      mode: 0o770,
      rules: [worldWritable('anyone can replace the generation page')],
      groupNeeds: 0o010,
      missing: ['WARN', 'absent: created with the page'],
    });
  }
  list.push(
    {
      name: 'generation page',
      path: settings.pagePath,
      type: 'file',
      mode: 0o660,
      rules: [
        worldWritable('anyone can hold generations still and keep stale cache entries alive'),
        { bits: 0o004, status: 'WARN', why: 'world-readable' },
      ],
      groupNeeds: 0o060,
      missing: ['WARN', 'absent: processes run without caching until the manager creates it'],
      size: PAGE_SIZE,
      validate: validatePage,
    },
    {
      name: 'manager socket',
      path: settings.socketPath,
      type: 'socket',
      mode: shared ? 0o660 : 0o600,
      rules: [
        worldWritable('anyone can connect and ask the manager for changes'),
        { bits: 0o004, status: 'WARN', why: 'world-readable' },
      ],
      groupNeeds: 0o060,
      missing: ['WARN', 'absent: is the manager running?'],
    },
    {
      name: 'TLS key',
      path: settings.keyPath,
      type: 'file',
      mode: shared ? 0o640 : 0o600,
      rules: [
        { bits: 0o022, status: 'FAIL', why: 'writable by others than its owner' },
        { bits: 0o004, status: 'FAIL', why: 'world-readable: anyone can read the private key' },
      ],
      groupNeeds: 0o040,
      missing: ['OK', 'absent: the manager makes a self-signed one on first start'],
    },
  );
  return list;
}

async function checkTarget(target: Target, gid: number | undefined): Promise<CheckResult> {
  const report = (findings: Finding[]): CheckResult => ({
    status: worst(findings.map(([status]) => status)),
    name: target.name,
    path: target.path,
    detail: findings.map(([, text]) => text).join('; '),
  });
  let stats: Stats;
  try {
    stats =
      target.type === 'directory' ? await fsp.stat(target.path) : await fsp.lstat(target.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT') return report([target.missing]);
    return report([['FAIL', `cannot check it: ${code} (run doctor as root)`]]);
  }
  const mode = stats.mode & 0o7777;
  const findings: Finding[] = [
    ['OK', `${octal(mode)} ${userName(stats.uid)}:${groupName(stats.gid)}`],
  ];
  if (!hasType(stats, target.type)) {
    const what = target.type === 'file' ? 'regular file' : target.type;
    const link = stats.isSymbolicLink() ? ' (a symlink)' : '';
    return report([...findings, ['FAIL', `not a ${what}${link}`]]);
  }
  const broken = target.rules.filter((rule) => (mode & rule.bits) !== 0);
  for (const rule of broken) findings.push([rule.status, rule.why]);
  if (gid !== undefined) {
    if (stats.gid !== gid) {
      findings.push(['FAIL', `group is not ${groupName(gid)}: the API daemon cannot use it`]);
    } else if ((mode & target.groupNeeds) !== target.groupNeeds) {
      findings.push(['FAIL', `group ${groupName(gid)} lacks ${octal(target.groupNeeds)}`]);
    }
  }
  if (stats.uid !== 0) findings.push(['WARN', `owned by ${userName(stats.uid)}, not root`]);
  if (mode !== target.mode && broken.length === 0) {
    findings.push(['WARN', `expected ${octal(target.mode)}`]);
  }
  if (target.size !== undefined && stats.size !== target.size) {
    findings.push(['FAIL', `size is ${stats.size} bytes, expected ${target.size}`]);
  } else if (target.validate && worst(findings.map(([s]) => s)) !== 'FAIL') {
    findings.push(target.validate(target.path));
  }
  return report(findings);
}

/** The files whose writers take a `<file>.lock` (the token database's only when it is there). */
function lockedFiles(settings: Settings): string[] {
  const files = [settings.userCfgPath, settings.shadowPath];
  if (existsSync(settings.tokenDatabasePath)) files.push(settings.tokenDatabasePath);
  return files;
}

/** A `<file>.lock` directory older than the stale time was left by a writer that crashed. */
async function checkLock(file: string, now: number, staleMs: number): Promise<CheckResult> {
  const lock = `${file}.lock`;
  const result = (status: CheckStatus, detail: string): CheckResult => ({
    status,
    name: `${path.basename(file)} lock`,
    path: lock,
    detail,
  });
  let stats: Stats;
  try {
    stats = await fsp.stat(lock);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT') return result('OK', 'not held');
    return result('FAIL', `cannot check it: ${code} (run doctor as root)`);
  }
  const age = now - stats.mtimeMs;
  if (age > staleMs) {
    return result(
      'WARN',
      `stale for ${Math.round(age / 1000)} s: a writer crashed holding it; the next writer takes it over`,
    );
  }
  return result('OK', 'held by a writer right now');
}

export interface DoctorOptions {
  now?: number;
  staleMs?: number;
}

export async function runDoctor(
  settings: Settings,
  options: DoctorOptions = {},
): Promise<CheckResult[]> {
  const now = options.now ?? Date.now();
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  const results: CheckResult[] = [];
  for (const target of targets(settings)) results.push(await checkTarget(target, settings.gid));
  for (const file of lockedFiles(settings)) {
    results.push(await checkLock(file, now, staleMs));
  }
  return results;
}

/** One thing `doctor --fix` changed (or, with `failed`, could not), in words an administrator can check. */
export interface Change {
  name: string;
  path: string;
  change: string;
  /** The repair of this target failed; the others went on. */
  failed?: boolean;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY, O_DIRECTORY } = fsConstants;

/**
 * Whether only root can change the entries of `file`'s directory: then no
 * other user can swap `file` for a symlink between a check and a change.
 */
async function onlyRootWrites(file: string): Promise<boolean> {
  try {
    const dir = await fsp.stat(path.dirname(file));
    return dir.uid === 0 && (dir.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** What `fixTarget` acts on: a descriptor, or (a socket, which cannot be opened) its path. */
interface Handle {
  stats: Stats;
  chown(uid: number, gid: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens `target` for changing its metadata without following a symlink that
 * someone else could have put there: files with O_NOFOLLOW (a symlink is
 * refused, never followed), then everything is done on the descriptor
 * (fstat, fchown, fchmod). A directory may be a symlink only in a directory
 * only root can write (an administrator's own link); a socket cannot be
 * opened, so it is changed by path only there. Null: nothing to change.
 */
async function openTarget(target: Target): Promise<Handle | null> {
  if (target.type === 'socket') {
    if (!(await onlyRootWrites(target.path))) return null;
    const stats = await fsp.lstat(target.path);
    return {
      stats,
      chown: (uid, gid) => fsp.lchown(target.path, uid, gid),
      chmod: (mode) => fsp.chmod(target.path, mode),
      close: async () => undefined,
    };
  }
  const flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | (target.type === 'directory' ? O_DIRECTORY : 0);
  let file: FileHandle;
  try {
    file = await fsp.open(target.path, flags | O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ELOOP' || target.type !== 'directory' || !(await onlyRootWrites(target.path))) {
      throw error;
    }
    file = await fsp.open(target.path, flags);
  }
  return {
    stats: await file.stat(),
    chown: (uid, gid) => file.chown(uid, gid),
    chmod: (mode) => file.chmod(mode),
    close: () => file.close(),
  };
}

/** Sets the metadata of `target` to the deployment's; nothing for a symlink or a wrong type. */
async function fixTarget(
  target: Target,
  gid: number | undefined,
  asRoot: boolean,
): Promise<Change[]> {
  let handle: Handle | null;
  try {
    handle = await openTarget(target);
  } catch {
    // Missing, or a symlink where a file belongs: doctor reports it, a person decides.
    return [];
  }
  if (handle === null) return [];
  try {
    const { stats } = handle;
    // A file where a directory belongs (or the like) is for a person to look at.
    if (!hasType(stats, target.type)) return [];
    const changes: Change[] = [];
    const note = (change: string) => changes.push({ name: target.name, path: target.path, change });
    const uid = asRoot && stats.uid !== 0 ? 0 : -1;
    const group = gid !== undefined && stats.gid !== gid ? gid : -1;
    if (uid !== -1 || group !== -1) {
      await handle.chown(uid, group);
      const owner = uid === -1 ? userName(stats.uid) : userName(0);
      const to = `${owner}:${groupName(group === -1 ? stats.gid : group)}`;
      note(`owner ${userName(stats.uid)}:${groupName(stats.gid)} -> ${to}`);
    }
    const mode = stats.mode & 0o7777;
    if (mode !== target.mode) {
      await handle.chmod(target.mode);
      note(`mode ${octal(mode)} -> ${octal(target.mode)}`);
    }
    return changes;
  } finally {
    await handle.close();
  }
}

/**
 * A page that is missing, of the wrong size or without the magic is made anew
 * (atomically: readers see the old file or the new one, and remap to it on
 * their next check); the page library's own repair does it, as the manager
 * does at start.
 */
function fixPage(settings: Settings): Change[] {
  const name = 'generation page';
  const gid = settings.gid === undefined ? {} : { gid: settings.gid };
  let existed = true;
  try {
    GenerationPage.open(settings.pagePath, { create: false, readOnly: true, pin: false }).close();
    return [];
  } catch (error) {
    if (!(error instanceof GenerationPageError)) throw error;
    if (error.problem === 'not-found') existed = false;
    // A symlink (not-regular-file) is refused, never followed nor replaced: for a person.
    else if (error.problem !== 'wrong-size' && error.problem !== 'wrong-magic') return [];
  }
  GenerationPage.open(settings.pagePath, {
    mkdir: true,
    repair: true,
    onRepair: () => undefined,
    pin: false,
    ...gid,
  }).close();
  return [
    { name, path: settings.pagePath, change: existed ? 'recreated (it was unusable)' : 'created' },
  ];
}

/** A lock left by a crashed writer: removed, so that nobody waits for it. */
async function fixLock(file: string, now: number, staleMs: number): Promise<Change[]> {
  const lock = `${file}.lock`;
  try {
    const stats = await fsp.stat(lock);
    if (now - stats.mtimeMs <= staleMs) return [];
  } catch {
    return [];
  }
  await fsp.rm(lock, { recursive: true, force: true });
  return [{ name: `${path.basename(file)} lock`, path: lock, change: 'removed the stale lock' }];
}

/**
 * `doctor --fix`: repairs what doctor can judge safely. Modes and owners are
 * set to the deployment's (owner root only when run as root, the group when
 * one is configured), on a descriptor opened without following a symlink; a
 * missing or broken page is made anew; stale locks go. It never follows,
 * changes or replaces a symlink where a file belongs (a symlinked page stays
 * a FAIL for a person to look at: no process maps a page through a symlink),
 * never touches a wrong type, nor the contents of user.cfg or token.shadow.
 * A target it cannot repair is listed as failed and the others are still
 * repaired. Returns what it changed.
 */
export async function fixDeployment(
  settings: Settings,
  options: DoctorOptions = {},
): Promise<Change[]> {
  const now = options.now ?? Date.now();
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  const asRoot = process.getuid?.() === 0;
  const changes: Change[] = [];
  // One target that cannot be repaired (a page that will not open, a chown refused) stops only itself.
  const attempt = async (name: string, file: string, fix: () => Promise<Change[]> | Change[]) => {
    try {
      changes.push(...(await fix()));
    } catch (error) {
      changes.push({ name, path: file, change: (error as Error).message, failed: true });
    }
  };
  for (const target of targets(settings)) {
    if (target.name === 'generation page') {
      await attempt(target.name, target.path, () => fixPage(settings));
    }
    await attempt(target.name, target.path, () => fixTarget(target, settings.gid, asRoot));
  }
  for (const file of lockedFiles(settings)) {
    await attempt(`${path.basename(file)} lock`, `${file}.lock`, () => fixLock(file, now, staleMs));
  }
  return changes;
}
