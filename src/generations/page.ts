import { fstatSync, statSync } from 'node:fs';
import { GenerationPageError, type GenerationPageProblem } from '../errors.js';
import { loadAddon, type NativePage } from '../native.js';
import { untrustworthy } from '../trust.js';
import { PAGE_SIZE, SLOT_COUNT } from './slots.js';

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
export type PageHealthProblem = 'faulted' | 'missing' | 'replaced' | 'truncated' | 'insecure';

export interface GenerationPageOptions {
  /** Create the page when it is missing (default true unless readOnly). */
  create?: boolean;
  /** Map read-only: `increment` then throws. For processes that never write. */
  readOnly?: boolean;
  /** Create the parent directory (mode `dirMode`) when missing. Default false. */
  mkdir?: boolean;
  /** Mode of a newly created page. Default 0660: the group shares it. */
  mode?: number;
  /** Mode of a newly created parent directory. Default 0770. */
  dirMode?: number;
  /** Group id given to a newly created page (and directory). */
  gid?: number;
}

const problemByCode: Record<string, GenerationPageProblem> = {
  ENOENT: 'not-found',
  EACCES: 'permission-denied',
  EPERM: 'permission-denied',
  ENOTREG: 'not-regular-file',
  EBADSIZE: 'wrong-size',
  EBADMAGIC: 'wrong-magic',
  EREADONLY: 'read-only',
};

function translate(path: string, error: unknown): unknown {
  if (error instanceof RangeError || !(error instanceof Error)) return error;
  if (error instanceof GenerationPageError) return error;
  const code = (error as { code?: string }).code ?? '';
  return new GenerationPageError(path, problemByCode[code] ?? 'io', error.message);
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
  #degraded = false;
  /** The mapping seen as u64 words: word 0 is the magic, word 1 + i is slot i. */
  #words: BigUint64Array;

  private constructor(path: string, native: NativePage, readOnly: boolean) {
    this.path = path;
    this.#native = native;
    this.readOnly = readOnly;
    this.#words = new BigUint64Array(native.buffer());
  }

  /** Opens (by default creating) the page; throws GenerationPageError. */
  static open(path: string, options: GenerationPageOptions = {}): GenerationPage {
    let addon: ReturnType<typeof loadAddon>;
    try {
      addon = loadAddon();
    } catch (error) {
      throw new GenerationPageError(
        path,
        'addon-unavailable',
        `native addon not loadable: ${(error as Error).message}`,
      );
    }
    const readOnly = options.readOnly ?? false;
    try {
      const native: NativePage = new addon.NativePage(path, {
        create: options.create ?? !readOnly,
        readOnly,
        mkdir: options.mkdir ?? false,
        mode: options.mode ?? 0o660,
        dirMode: options.dirMode ?? 0o770,
        gid: options.gid ?? -1,
      });
      const st = fstatSync(native.fd());
      const insecure = untrustworthy(st, { groupMayWrite: true });
      if (insecure !== null) {
        native.close();
        throw new GenerationPageError(path, 'insecure', `refusing the page: ${insecure}`);
      }
      return new GenerationPage(path, native, readOnly);
    } catch (error) {
      throw translate(path, error);
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

  /** Adds one to `slot` and returns the new value (fetch_add, acq_rel). */
  increment(slot: number): number {
    try {
      return safeNumber(this.#page().increment(slot));
    } catch (error) {
      throw translate(this.path, error);
    }
  }

  /** The descriptor of the mapped file, for checking that the path still names it. */
  fd(): number {
    return this.#page().fd();
  }

  /**
   * Whether the page is still the trustworthy shared page it was when opened:
   * not truncated (an access faulted), the path still names the mapped file,
   * 4096 bytes, not writable by others. Two stat calls: call it at most once
   * per TTL or on the slow path, never per request.
   */
  health(): PageHealthProblem | null {
    const native = this.#page();
    if (native.faulted()) return 'faulted';
    const mapped = fstatSync(native.fd());
    let named: ReturnType<typeof statSync>;
    try {
      named = statSync(this.path);
    } catch {
      return 'missing';
    }
    if (named.ino !== mapped.ino || named.dev !== mapped.dev) return 'replaced';
    if (mapped.size !== PAGE_SIZE) return 'truncated';
    if (untrustworthy(mapped, { groupMayWrite: true }) !== null) return 'insecure';
    return null;
  }

  /**
   * True when the page went bad; the first call that finds out says so once
   * through `warn`, naming the problem. Callers then stop caching.
   */
  degraded(warn: WarningSink): boolean {
    if (this.#degraded) return true;
    const problem = this.#native === null ? null : this.health();
    if (problem === null) return false;
    this.#degraded = true;
    warn(`generation page ${this.path} ${describeProblem(problem)}: caching disabled`);
    return true;
  }

  get closed(): boolean {
    return this.#native === null;
  }

  /** Unmaps the page. Idempotent. */
  close(): void {
    this.#native?.close();
    this.#native = null;
  }

  #page(): NativePage {
    if (!this.#native) throw new GenerationPageError(this.path, 'closed', 'page is closed');
    return this.#native;
  }
}

function describeProblem(problem: PageHealthProblem): string {
  switch (problem) {
    case 'faulted':
      return 'was truncated while mapped (an access faulted)';
    case 'missing':
      return 'was removed while mapped';
    case 'replaced':
      return 'was replaced by another file while mapped';
    case 'truncated':
      return 'changed size while mapped';
    case 'insecure':
      return 'became writable by others or changed owner';
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
