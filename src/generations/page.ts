import { GenerationPageError, type GenerationPageProblem } from '../errors.js';
import { loadAddon, type NativePage } from '../native.js';
import { SLOT_COUNT } from './slots.js';

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
      const native = new addon.NativePage(path, {
        create: options.create ?? !readOnly,
        readOnly,
        mkdir: options.mkdir ?? false,
        mode: options.mode ?? 0o660,
        dirMode: options.dirMode ?? 0o770,
        gid: options.gid ?? -1,
      });
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
    return Number(Atomics.load(this.#words, slot + 1));
  }

  /** Adds one to `slot` and returns the new value (fetch_add, acq_rel). */
  increment(slot: number): number {
    try {
      return this.#page().increment(slot);
    } catch (error) {
      throw translate(this.path, error);
    }
  }

  /** The descriptor of the mapped file, for checking that the path still names it. */
  fd(): number {
    return this.#page().fd();
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
