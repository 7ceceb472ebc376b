/**
 * argon2id parameters for new token hashes.
 *
 * Defaults: 19 MiB, 2 passes, 1 lane — OWASP's recommended minimum for
 * argon2id. A token secret is a random UUID (122 bits), so the hash cost does
 * not protect it from guessing; it exists so that a stolen token.shadow is
 * useless and a flood of wrong secrets costs the attacker as much as us. More
 * memory or passes only make every uncached verify (and a flood) dearer, and a
 * single lane keeps one verify on one thread, which the pool schedules.
 */
export interface Argon2Params {
  /** Memory in KiB. */
  memoryCost: number;
  /** Passes over memory. */
  timeCost: number;
  /** Lanes (threads inside one hash). */
  parallelism: number;
}

/** argon2id for new secrets: 19 MiB, t=2, p=1 (OWASP's minimum; secrets are random UUIDs). */
export const DEFAULT_ARGON2: Argon2Params = Object.freeze({
  memoryCost: 19 * 1024,
  timeCost: 2,
  parallelism: 1,
});

/** The hash formats we verify: argon2 (any parameters) and Proxmox's crypt(3) hashes. */
export type HashKind = 'argon2' | 'sha256-crypt' | 'sha512-crypt' | 'yescrypt' | 'unknown';

export function hashKind(hash: string): HashKind {
  if (hash.startsWith('$argon2')) return 'argon2';
  if (hash.startsWith('$5$')) return 'sha256-crypt';
  if (hash.startsWith('$6$')) return 'sha512-crypt';
  if (hash.startsWith('$y$')) return 'yescrypt';
  return 'unknown';
}

/** What verifying a legacy hash is called in AddonUnavailableError. */
export function legacyPurpose(hash: string): string {
  return `verifying ${hash.slice(0, 3)} (${hashKind(hash)}) hashes`;
}

export function isLegacyHash(hash: string): boolean {
  const kind = hashKind(hash);
  return kind !== 'argon2' && kind !== 'unknown';
}
