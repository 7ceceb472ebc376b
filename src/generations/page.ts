import { randomBytes } from 'node:crypto';
import { fstatSync, lstatSync, renameSync, rmSync } from 'node:fs';
import { GenerationPageError, type GenerationPageProblem } from '../errors.js';
import { loadAddon, type NativePage, type NativePageOptions } from '../native.js';
import { untrustworthy } from '../trust.js';
import { claimPageRecord, readPageRecord } from './record.js';
import { PAGE_SIZE, PageWord, SLOT_COUNT } from './slots.js';
import { pinMapping, repin, retireMapping, retireStaleMappings } from './stale.js';

/** How often a process whose page went bad tries to map a good one again. */
const RETRY_MS = 1000;
/** Opens of the path before giving up on a page that keeps moving while being pinned. */
const PIN_ATTEMPTS = 8;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A counter as a number. Readers only compare generations for equality, and
 * past 2^53 consecutive values would round to the same double, hiding a bump:
 * so large values are reduced modulo 2^53, which keeps consecutive values
 * distinct. A real deployment needs 2^53 changes to get there; a forged page
 * does not.
 */
function safeNumber(value: bigint): number {
  return Number(value <= MAX_SAFE ? value : BigInt.asUintN(53, value));
}

/** Why a page that was fine when opened can no longer be trusted. */
export type PageHealthProblem =
  | 'faulted'
  | 'retired'
  | 'missing'
  | 'replaced'
  | 'truncated'
  | 'insecure'
  | 'unrecorded';

/** How to open the generation page: create it, read-only, its mode and group. */
export interface GenerationPageOptions extends NativePageOptions {
  /**
   * Recreate a page of the wrong size or magic (atomically, one warning
   * through `onRepair`) instead of refusing it: for the daemon that owns it.
   */
  repair?: boolean;
  onRepair?: WarningSink;
  /**
   * Pin the mapping where writers look for it (src/generations/stale.ts), so
   * that a writer can retire it once another page takes the path. Default
   * true; false only for a process that inspects the page and never caches
   * through it (doctor): an unpinned mapping is out of every writer's reach.
   */
  pin?: boolean;
  /**
   * The configuration directory's record (src/generations/record.ts) that
   * names this page. Checked with the page's health: once it names another
   * page (or none it can trust), processes opened since map another page,
   * so this one stops caching and a writer refuses to change anything.
   */
  recordPath?: string;
}

const problemByCode: Record<string, GenerationPageProblem> = {
  ENOENT: 'not-found',
  EACCES: 'permission-denied',
  EPERM: 'permission-denied',
  ENOTREG: 'not-regular-file',
  EBADSIZE: 'wrong-size',
  EBADMAGIC: 'wrong-magic',
  EREADONLY: 'read-only',
  // O_NOFOLLOW: a symlink at the path is refused, never followed.
  ELOOP: 'not-regular-file',
};

function translate(path: string, error: unknown): unknown {
  if (error instanceof RangeError || !(error instanceof Error)) return error;
  if (error instanceof GenerationPageError) return error;
  const code = (error as { code?: string }).code ?? '';
  const detail = code === 'ELOOP' ? 'a symbolic link, not followed' : error.message;
  return new GenerationPageError(path, problemByCode[code] ?? 'io', detail);
}

/**
 * The shared page of 64-bit generation counters (see native/page.cc). Every
 * process maps the same file; a writer bumps a slot after replacing the file
 * the slot stands for, and readers compare it with the generation their cache
 * was built at.
 */
export class GenerationPage {
  readonly path: string;
  readonly readOnly: boolean;
  #native: NativePage | null;
  #options: NativePageOptions;
  #pin: boolean;
  #recordPath: string | undefined;
  /** Went bad and could not be remapped; retried after RETRY_MS. */
  #bad = false;
  #badSince = 0;
  #mapping = 0;
  /** The mapping seen as u64 words: word 0 is the magic, word 1 + i is slot i. */
  #words: BigUint64Array;

  private constructor(
    path: string,
    native: NativePage,
    options: NativePageOptions,
    pin: boolean,
    recordPath: string | undefined,
  ) {
    this.path = path;
    this.#native = native;
    this.#options = options;
    this.#pin = pin;
    this.#recordPath = recordPath;
    this.readOnly = options.readOnly === true;
    this.#words = new BigUint64Array(native.buffer());
  }

  /** Opens (by default creating) the page; throws GenerationPageError. */
  static open(path: string, options: GenerationPageOptions = {}): GenerationPage {
    const readOnly = options.readOnly ?? false;
    const native: NativePageOptions = {
      create: options.create ?? !readOnly,
      readOnly,
      mkdir: options.mkdir ?? false,
      mode: options.mode ?? 0o660,
      dirMode: options.dirMode ?? 0o770,
      gid: options.gid ?? -1,
    };
    const pin = options.pin ?? true;
    try {
      const page = new GenerationPage(
        path,
        mapPage(path, native, pin),
        native,
        pin,
        options.recordPath,
      );
      // A retired page at the path (put back from a pin or a copy) is never trusted again.
      if (options.repair && !readOnly && page.retired()) {
        page.close();
        throw new GenerationPageError(path, 'retired', 'retired by a writer');
      }
      return page;
    } catch (error) {
      const repairable =
        error instanceof GenerationPageError &&
        (error.problem === 'wrong-size' ||
          error.problem === 'wrong-magic' ||
          error.problem === 'retired');
      if (!options.repair || readOnly || !repairable) throw error;
      recreatePage(path, native);
      (options.onRepair ?? defaultWarn)(
        `generation page ${path} was unusable (${error.message.slice(path.length + 2)}): recreated`,
      );
      return new GenerationPage(path, mapPage(path, native, pin), native, pin, options.recordPath);
    }
  }

  /**
   * The current value of `slot`. RangeError outside 0..510. This is the hot
   * path of every request, so it reads the mapping directly with Atomics.load
   * (sequentially consistent, so at least the acquire the protocol needs)
   * instead of crossing into the addon, which costs ~150 ns.
   */
  load(slot: number): number {
    if (!(slot >= 0 && slot < SLOT_COUNT && slot === Math.floor(slot))) {
      throw new RangeError(`slot must be an integer from 0 to ${SLOT_COUNT - 1}`);
    }
    if (this.#native === null) this.#page();
    return safeNumber(Atomics.load(this.#words, slot + 1));
  }

  /**
   * Which file this object maps, counted from 0: it moves when the page was
   * remapped (the path names a new file). Generations of two mappings are not
   * comparable, so whoever keeps one keeps this number with it.
   */
  get mapping(): number {
    return this.#mapping;
  }

  /** Adds one to `slot` and returns the new value (fetch_add, acq_rel). */
  increment(slot: number): number {
    try {
      return safeNumber(this.#page().increment(slot));
    } catch (error) {
      throw translate(this.path, error);
    }
  }

  /**
   * Sets `slot` to `value` (Atomics.store, sequentially consistent). Only for
   * slots that are not generation counters (the fence): a counter must only
   * ever be incremented, or a reader could see an old value again.
   */
  store(slot: number, value: number): void {
    if (this.readOnly) {
      throw new GenerationPageError(this.path, 'read-only', 'cannot store into a read-only page');
    }
    if (!(slot >= 0 && slot < SLOT_COUNT && slot === Math.floor(slot))) {
      throw new RangeError(`slot must be an integer from 0 to ${SLOT_COUNT - 1}`);
    }
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('value must be a safe u64');
    this.#page();
    Atomics.store(this.#words, slot + 1, BigInt(value));
  }

  /** The descriptor of the mapped file, for checking that the path still names it. */
  fd(): number {
    return this.#page().fd();
  }

  /** A writer found this mapping no longer at the path and told its readers so. */
  retired(): boolean {
    return this.#native !== null && Atomics.load(this.#words, PageWord.RETIRED + 1) !== 0n;
  }

  /**
   * Whether the page is still the trustworthy shared page it was when opened:
   * not truncated (an access faulted), not retired, the path still names the
   * mapped file, 4096 bytes, not writable by others. Two stat calls: call it
   * at most once per TTL or on the slow path, never per request.
   */
  health(): PageHealthProblem | null {
    const native = this.#page();
    if (native.faulted()) return 'faulted';
    if (this.retired()) return 'retired';
    const mapped = fstatSync(native.fd());
    let named: ReturnType<typeof lstatSync>;
    try {
      named = lstatSync(this.path);
    } catch {
      return 'missing';
    }
    if (named.ino !== mapped.ino || named.dev !== mapped.dev) return 'replaced';
    if (mapped.size !== PAGE_SIZE) return 'truncated';
    if (untrustworthy(mapped, { groupMayWrite: true }) !== null) return 'insecure';
    return this.#recordedHere() ? null : 'unrecorded';
  }

  /** Whether the record (if this page has one) still names this page. */
  #recordedHere(): boolean {
    if (this.#recordPath === undefined) return true;
    const record = readPageRecord(this.#recordPath);
    return record.kind === 'recorded' && record.pagePath === this.path;
  }

  /**
   * Whether the page can be used for caching now. A page that went bad is
   * replaced by the one now at the path when that is a good page (one line
   * through `warn`; `mapping` then moves); otherwise the first call says so
   * once and caching stops until a later call (at most every second) finds a
   * good page again. Two stat calls: slow path or once per TTL only.
   */
  usable(warn: WarningSink): boolean {
    if (this.#native === null) return false;
    if (this.#bad && performance.now() - this.#badSince < RETRY_MS) return false;
    const problem = this.health();
    if (problem === null) {
      this.#bad = false;
      return true;
    }
    const before = describeProblem(problem);
    // The page at this path is no longer the one writers bump: remapping it would not help.
    if (problem !== 'unrecorded' && this.#remap()) {
      this.#bad = false;
      warn(`generation page ${this.path} ${before}: now using the page at the path`);
      return true;
    }
    if (!this.#bad) warn(`generation page ${this.path} ${before}: caching disabled`);
    this.#bad = true;
    this.#badSince = performance.now();
    return false;
  }

  /** True when the page went bad (see `usable`). */
  degraded(warn: WarningSink): boolean {
    return !this.usable(warn);
  }

  /**
   * A writer's duty before it changes a file: make sure every mapping a reader
   * may hold will see the bump. The one this process maps must be the one at
   * the path (else it is retired and the path's page mapped instead), and
   * every other page some process pinned is retired (src/generations/stale.ts:
   * one readdir when there is none). Throws GenerationPageError 'unreachable'
   * when a process may map an older page this writer cannot retire: nothing
   * must be changed then. Returns whether this mapping can be bumped.
   */
  prepareWrite(): boolean {
    this.#checkRecord();
    let problem = this.health();
    if (problem === 'retired' || problem === 'replaced' || problem === 'missing') {
      this.#retire();
      this.#remap();
      problem = this.health();
    } else if (problem === 'faulted' || problem === 'truncated') {
      // Whoever maps a truncated file faults into no caching; a good page at the path takes over.
      this.#remap();
      problem = this.health();
    }
    const healthy = problem === null;
    if (healthy && this.#pin) repin(this.path, this.#page());
    retireStaleMappings(this.path, healthy ? fstatSync(this.fd(), { bigint: true }) : null);
    return healthy;
  }

  /**
   * Bumps `slot` after a writer replaced its file (call `prepareWrite` first).
   * The page could have been swapped between the two: then the bump is
   * repeated on the page now at the path, after retiring this one. Returns
   * the new value, or null when no good page is mapped.
   */
  bump(slot: number, usable: boolean): number | null {
    if (!usable) return null;
    const value = this.increment(slot);
    if (this.health() === null) return value;
    return this.prepareWrite() ? this.increment(slot) : null;
  }

  /**
   * Before a write: the record must still name this page. A removed record is
   * claimed again for it (readers that map it are then right); a record naming
   * another page means processes opened since map that one, which this
   * writer cannot reach: it throws 'unreachable' and nothing is changed.
   */
  #checkRecord(): void {
    if (this.#recordPath === undefined) return;
    let record = readPageRecord(this.#recordPath);
    if (record.kind === 'absent') {
      const gid = (this.#options.gid ?? -1) >= 0 ? this.#options.gid : undefined;
      try {
        record = claimPageRecord(this.#recordPath, this.path, gid);
      } catch (error) {
        record = { kind: 'invalid', reason: (error as Error).message };
      }
    }
    if (record.kind === 'recorded' && record.pagePath === this.path) return;
    const now =
      record.kind === 'recorded'
        ? `names ${record.pagePath}`
        : `cannot be used (${record.kind === 'invalid' ? record.reason : 'absent'})`;
    throw new GenerationPageError(
      this.path,
      'unreachable',
      `${this.#recordPath} ${now}, not this page: processes opened since map another page; restart this one to follow the record`,
    );
  }

  get closed(): boolean {
    return this.#native === null;
  }

  /** Unmaps the page. Idempotent. */
  close(): void {
    this.#native?.close();
    this.#native = null;
  }

  /** Sets RETIRED and bumps every counter slot, so that readers of this mapping fall to the slow path. */
  #retire(): void {
    const native = this.#page();
    if (this.readOnly || native.faulted()) return;
    retireMapping(native);
  }

  /** Maps the page now at the path in place of this one; false (and no change) when it cannot. */
  #remap(): boolean {
    let next: NativePage;
    try {
      next = mapPage(this.path, this.#options, this.#pin);
    } catch {
      return false;
    }
    // A retired page is never trusted again, even back at the path.
    if (new BigUint64Array(next.buffer())[PageWord.RETIRED + 1] !== 0n) {
      next.close();
      return false;
    }
    this.#native?.close();
    this.#native = next;
    this.#words = new BigUint64Array(next.buffer());
    this.#mapping++;
    return true;
  }

  #page(): NativePage {
    if (!this.#native) throw new GenerationPageError(this.path, 'closed', 'page is closed');
    return this.#native;
  }
}

/**
 * Maps and checks the page at `path` (never through a symlink), pinned unless
 * `pin` is false: the page is trusted only once pinned while still at the
 * path. Throws GenerationPageError.
 */
function mapPage(path: string, options: NativePageOptions, pin: boolean): NativePage {
  let addon: ReturnType<typeof loadAddon>;
  try {
    addon = loadAddon('the generation page (caching)');
  } catch (error) {
    throw new GenerationPageError(path, 'addon-unavailable', (error as Error).message);
  }
  for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    let native: NativePage;
    try {
      native = new addon.NativePage(path, options);
    } catch (error) {
      throw translate(path, error);
    }
    try {
      const insecure = untrustworthy(fstatSync(native.fd()), { groupMayWrite: true });
      if (insecure !== null) {
        throw new GenerationPageError(path, 'insecure', `refusing the page: ${insecure}`);
      }
      if (!pin || pinMapping(path, native)) return native;
    } catch (error) {
      native.close();
      throw translate(path, error);
    }
    native.close();
  }
  throw new GenerationPageError(path, 'io', 'the page kept changing while it was being opened');
}

/** A fresh page beside `path`, renamed over it: readers see the old file or the new one. */
function recreatePage(path: string, options: NativePageOptions): void {
  // A name nobody can guess: the directory is writable by the deployment's group.
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.repair`;
  rmSync(temp, { force: true });
  mapPage(temp, { ...options, create: true }, false).close();
  try {
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw translate(path, error);
  }
}

function describeProblem(problem: PageHealthProblem): string {
  switch (problem) {
    case 'faulted':
      return 'was truncated while mapped (an access faulted)';
    case 'retired':
      return 'was retired by a writer (replaced or removed)';
    case 'missing':
      return 'was removed while mapped';
    case 'replaced':
      return 'was replaced by another file while mapped';
    case 'truncated':
      return 'changed size while mapped';
    case 'insecure':
      return 'became writable by others or changed owner';
    case 'unrecorded':
      return 'is no longer the page the configuration directory records (restart to follow the record)';
  }
}

/** Called with one line when the page is unavailable; defaults to process.emitWarning. */
export type WarningSink = (message: string) => void;

const defaultWarn: WarningSink = (message) =>
  process.emitWarning(message, { code: 'TOKEN_SHADOW_NO_GENERATION_PAGE' });

/**
 * Opens the page, or returns null after one warning naming the reason. Callers
 * treat null as "no generations": no caching, every verify hashes, which is
 * correct and only slower (Proxmox's `None` generation).
 */
export function openGenerationPageOrNull(
  path: string,
  options: GenerationPageOptions = {},
  warn: WarningSink = defaultWarn,
): GenerationPage | null {
  try {
    return GenerationPage.open(path, options);
  } catch (error) {
    warn(`generation page unavailable, caching disabled: ${(error as Error).message}`);
    return null;
  }
}
