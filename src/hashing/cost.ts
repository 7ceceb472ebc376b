/**
 * An upper bound on what one stored hash may cost to verify. The cost of a
 * verify is read from the hash itself, so one corrupt or hostile entry in
 * token.shadow (argon2 with 1 GiB, `$5$rounds=999999999$`, a yescrypt N of
 * 2^20) could hold a hashing thread for minutes and turn every other uncached
 * request into a 503. Hashes above these limits verify nothing.
 */
import { hashKind } from './params.js';

export const MAX_ARGON2_MEMORY_KIB = 256 * 1024;
export const MAX_ARGON2_PASSES = 16;
export const MAX_ARGON2_LANES = 16;
export const MAX_SHA_CRYPT_ROUNDS = 1_000_000;
export const MAX_YESCRYPT_BYTES = 256 * 1024 * 1024;

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function argon2Problem(hash: string): string | null {
  const params = /\$m=(\d+),t=(\d+),p=(\d+)\$|\$m=(\d+),p=(\d+),t=(\d+)\$/.exec(hash);
  if (params === null) return 'argon2 parameters missing';
  const m = Number(params[1] ?? params[4]);
  const t = Number(params[2] ?? params[6]);
  const p = Number(params[3] ?? params[5]);
  if (m > MAX_ARGON2_MEMORY_KIB) return `argon2 memory ${m} KiB above ${MAX_ARGON2_MEMORY_KIB}`;
  if (t > MAX_ARGON2_PASSES) return `argon2 passes ${t} above ${MAX_ARGON2_PASSES}`;
  if (p > MAX_ARGON2_LANES) return `argon2 lanes ${p} above ${MAX_ARGON2_LANES}`;
  return null;
}

function shaCryptProblem(hash: string): string | null {
  const rounds = /^\$[56]\$rounds=(\d+)\$/.exec(hash);
  if (rounds === null) return null; // the default, 5000 rounds
  const n = Number(rounds[1]);
  return n > MAX_SHA_CRYPT_ROUNDS ? `sha-crypt rounds ${n} above ${MAX_SHA_CRYPT_ROUNDS}` : null;
}

/**
 * `$y$` + flavor + N + r, each one character of crypt's base64: N = 2^(i+1),
 * r = i+1 (libxcrypt's default, which Proxmox writes, is `j9T`: N = 4096,
 * r = 32, 16 MiB). Longer parameter strings (p, t, g) are not accepted.
 */
function yescryptProblem(hash: string): string | null {
  const params = hash.slice(3, hash.indexOf('$', 3));
  if (params.length !== 3) return 'yescrypt parameters other than flavor, N and r';
  const nLog2 = ITOA64.indexOf(params[1] as string) + 1;
  const r = ITOA64.indexOf(params[2] as string) + 1;
  if (nLog2 <= 0 || r <= 0) return 'yescrypt parameters unreadable';
  const bytes = 128 * r * 2 ** nLog2;
  return bytes > MAX_YESCRYPT_BYTES ? `yescrypt memory ${bytes} bytes above the limit` : null;
}

/** Why verifying `hash` would cost too much, or null when it may be verified. */
export function hashCostProblem(hash: string): string | null {
  switch (hashKind(hash)) {
    case 'argon2':
      return argon2Problem(hash);
    case 'sha256-crypt':
    case 'sha512-crypt':
      return shaCryptProblem(hash);
    case 'yescrypt':
      return yescryptProblem(hash);
    default:
      return null;
  }
}
