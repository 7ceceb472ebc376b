/**
 * Loads the N-API addon built from native/. N-API keeps one binary valid for
 * every Node version, so the package ships prebuilds/<platform>-<arch>/ and
 * node-gyp-build picks the first that fits: a local build/Release (present only
 * when this checkout or install compiled one, because no prebuild fitted or a
 * developer rebuilt native/), else the prebuild. Set TOKEN_SHADOW_ADDON to a
 * path to load another build (the sanitizer builds).
 *
 * Everything except the generation page (caching) and legacy crypt(3) hashes
 * works without the addon; those say so with AddonUnavailableError.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { AddonUnavailableError } from './errors.js';

/** How the addon opens the page (GenerationPageOptions adds the TypeScript face's own). */
export interface NativePageOptions {
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

export interface NativePage {
  /** The exact u64 value (the TypeScript face reads the mapping directly instead). */
  load(slot: number): bigint;
  increment(slot: number): bigint;
  close(): void;
  fd(): number;
  /** The mapped page as an external ArrayBuffer; detached by close(). */
  buffer(): ArrayBuffer;
  /** An access faulted (the file was truncated) and the mapping now reads zeros. */
  faulted(): boolean;
  /**
   * flock on the page's descriptor without waiting: shared (a process maps
   * it) or exclusive (no process does). False when another holder is in the way.
   */
  lock(exclusive: boolean): boolean;
  /** A hard link at `path` to the mapped file itself; false when `path` exists. */
  link(path: string): boolean;
}

export interface Addon {
  NativePage: new (path: string, options: NativePageOptions) => NativePage;
  slotCount: number;
  pageSize: number;
  cryptHash(phrase: string, setting: string): string | null;
  cryptVerify(phrase: string, hash: string): boolean;
  cryptGensalt(prefix: string, count: number): string | null;
  digestInto(slab: Uint8Array, offset: number, secret: string): void;
  digestEquals(slab: Uint8Array, offset: number, secret: string): boolean;
  digestSize: number;
}

const require = createRequire(import.meta.url);
/** The package root: this file is dist/src/native.js. */
const packageRoot = fileURLToPath(new URL('../..', import.meta.url));

let cached: Addon | undefined;
let failure: Error | undefined;

function resolveAddonPath(): string {
  const override = process.env.TOKEN_SHADOW_ADDON;
  if (override) return override;
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  return nodeGypBuild.resolve(packageRoot);
}

/**
 * The addon, or AddonUnavailableError naming `purpose` (what needed it). The
 * load is tried once; its failure is remembered.
 */
export function loadAddon(purpose = 'this operation'): Addon {
  if (cached) return cached;
  if (!failure) {
    try {
      cached = require(resolveAddonPath()) as Addon;
      return cached;
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
    }
  }
  throw new AddonUnavailableError(purpose, failure);
}

/** Whether the addon loads (tries it once). */
export function addonAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}
