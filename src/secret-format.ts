/**
 * The secrets token-shadow makes: a form a secret scanner can find and the
 * server can refuse before any lookup, as GitHub's tokens are.
 *
 *   tsk_ + 43 base62 characters (256 random bits) + 6 base62 characters of
 *   CRC32 over everything before them          = 53 characters, [0-9A-Za-z_]
 *
 * The prefix makes a regular expression find them (`SECRET_PATTERN`) where a
 * bare UUID is indistinguishable from any other; the checksum lets the
 * server refuse a mistyped or made-up secret in a few hundred nanoseconds,
 * the same for every token id, before it looks anything up or hashes (and
 * lets a scanner that validates tell a real find from a near miss). The
 * alphabet needs no escaping in a header, a URL or a shell.
 *
 * Secrets in Proxmox's form (a lowercase UUID, and whatever was imported)
 * keep working: only a secret that claims the prefix is held to the format.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const SECRET_PREFIX = 'tsk_';
const RANDOM_CHARS = 43;
const CHECK_CHARS = 6;
export const SECRET_LENGTH = SECRET_PREFIX.length + RANDOM_CHARS + CHECK_CHARS;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BASE = BigInt(ALPHABET.length);

/** What finds these secrets in text (logs, repositories); no other string has the prefix and length. */
export const SECRET_PATTERN = /\btsk_[0-9A-Za-z]{49}\b/;

/** The form of new secrets: this project's scannable form, or Proxmox's UUID for clients that insist. */
export type SecretFormat = 'scannable' | 'uuid';
export const SECRET_FORMATS: readonly SecretFormat[] = ['scannable', 'uuid'];

function base62(value: bigint, width: number): string {
  let text = '';
  let rest = value;
  for (let i = 0; i < width; i++) {
    text = ALPHABET[Number(rest % BASE)] + text;
    rest /= BASE;
  }
  return text;
}

/** CRC32 of `body` as 6 base62 digits (Number arithmetic: it runs on every refused secret). */
function checksum(body: string): string {
  let rest = crc32(body);
  let text = '';
  for (let i = 0; i < CHECK_CHARS; i++) {
    text = ALPHABET[rest % 62] + text;
    rest = Math.floor(rest / 62);
  }
  return text;
}

/** A new secret of `format`, from the system's CSPRNG. */
export function newSecret(format: SecretFormat = 'scannable'): string {
  if (format === 'uuid') return randomUUID();
  // 32 random bytes are 256 bits; 43 base62 digits hold 256.03 bits, so none is lost.
  const body = SECRET_PREFIX + base62(BigInt(`0x${randomBytes(32).toString('hex')}`), RANDOM_CHARS);
  return body + checksum(body);
}

/**
 * Whether a secret that claims the prefix is one this project could have
 * made (length, alphabet, checksum). Secrets without the prefix are not
 * judged here: they are Proxmox's, or imported, and only their hash decides.
 */
export function plausibleSecret(secret: string): boolean {
  if (!secret.startsWith(SECRET_PREFIX)) return true;
  if (secret.length !== SECRET_LENGTH || !/^tsk_[0-9A-Za-z]+$/.test(secret)) return false;
  const at = SECRET_LENGTH - CHECK_CHARS;
  return checksum(secret.slice(0, at)) === secret.slice(at);
}
