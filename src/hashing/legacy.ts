/**
 * Legacy crypt(3) hashes as Proxmox writes them, made through the system's
 * libxcrypt. We never write these for new secrets; this exists for imports and
 * tests. Verification happens in the pool worker.
 */
import { loadAddon } from '../native.js';

const PREFIX = { 'sha256-crypt': '$5$', 'sha512-crypt': '$6$', yescrypt: '$y$' } as const;

export function makeLegacyHash(secret: string, kind: keyof typeof PREFIX): string {
  const addon = loadAddon(`making ${kind} hashes`);
  const setting = addon.cryptGensalt(PREFIX[kind], 0);
  const hash = setting === null ? null : addon.cryptHash(secret, setting);
  if (hash === null) throw new Error(`libcrypt cannot make ${kind} hashes`);
  return hash;
}
