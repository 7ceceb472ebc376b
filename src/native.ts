/**
 * Loads the N-API addon built from native/. Set TOKEN_SHADOW_ADDON to a path to
 * load another build (the sanitizer builds); otherwise the node-gyp Release build.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativePageOptions {
  create?: boolean;
  readOnly?: boolean;
  mkdir?: boolean;
  mode?: number;
  dirMode?: number;
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
const defaultPath = fileURLToPath(
  new URL('../../build/Release/token_shadow.node', import.meta.url),
);

let cached: Addon | undefined;
let failure: Error | undefined;

/** The addon, or throws the load error (remembered, so it is tried once). */
export function loadAddon(): Addon {
  if (cached) return cached;
  if (failure) throw failure;
  try {
    cached = require(process.env.TOKEN_SHADOW_ADDON || defaultPath) as Addon;
    return cached;
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    throw failure;
  }
}
