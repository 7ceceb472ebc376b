/**
 * The secrets token-shadow makes: a form a secret scanner can find and the
 * server can refuse before any lookup, as GitHub's tokens are.
 *
 *   tsk_ + 8 base62 characters of reference + 43 base62 characters (256
 *   random bits) + 6 base62 characters of CRC32 over everything before them
 *                                              = 61 characters, [0-9A-Za-z_]
 *
 * The prefix makes a regular expression find them (`SECRET_PATTERN`) where a
 * bare UUID is indistinguishable from any other; the checksum lets the
 * server refuse a mistyped or made-up secret in a few hundred nanoseconds,
 * the same for every token id, before it looks anything up or hashes (and
 * lets a scanner that validates tell a real find from a near miss). The
 * alphabet needs no escaping in a header, a URL or a shell.
 *
 * The reference is public and derived from the token id alone (SHA-256 over
 * a fixed domain string and the id), so it needs no storage and is the same
 * on every host: whoever reports a leaked secret (POST
 * /access/leaked-secrets) lets the server find the token it belongs to
 * without trying every stored hash. Two tokens may share a reference (about
 * 47.6 bits); each candidate is checked with its hash. It also lets whoever
 * holds a secret test guesses of its token id offline: token ids are not
 * secrets in Proxmox's model (task logs and access logs name them), the
 * secret is. Secrets made before the reference (53 characters: tsk_ + 43 +
 * 6) keep working and keep their checksum; they cannot be reported by
 * reference.
 *
 * Secrets in Proxmox's form (a lowercase UUID, and whatever was imported)
 * keep working: only a secret that claims the prefix is held to the format.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const SECRET_PREFIX = 'tsk_';
const REFERENCE_CHARS = 8;
const RANDOM_CHARS = 43;
const CHECK_CHARS = 6;
/** The length of a new secret (with its reference). */
export const SECRET_LENGTH = SECRET_PREFIX.length + REFERENCE_CHARS + RANDOM_CHARS + CHECK_CHARS;
/** The length of a secret made before references (still accepted, never made). */
export const UNREFERENCED_SECRET_LENGTH = SECRET_PREFIX.length + RANDOM_CHARS + CHECK_CHARS;
/** What the reference is a hash of, besides the token id: a change of scheme changes it. */
const REFERENCE_DOMAIN = 'token-shadow secret reference v1\0';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BASE = BigInt(ALPHABET.length);

/**
 * What finds these secrets in text (logs, repositories): the 61-character
 * form and the 53-character one made before references; no other string has
 * the prefix and one of these lengths.
 */
export const SECRET_PATTERN = /\btsk_(?:[0-9A-Za-z]{8})?[0-9A-Za-z]{49}\b/;

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

/** The public reference of `tokenid`'s secrets: 8 base62 digits of SHA-256(domain, id). */
export function secretReference(tokenid: string): string {
  const digest = createHash('sha256').update(REFERENCE_DOMAIN).update(tokenid).digest();
  return base62(digest.readBigUInt64BE(0), REFERENCE_CHARS);
}

/**
 * A new secret of `format` for `tokenid`, from the system's CSPRNG. Both are
 * required: a call that passes the format alone (the signature before
 * references) must not compile as a token id.
 */
export function newSecret(tokenid: string, format: SecretFormat): string {
  if (format === 'uuid') return randomUUID();
  // 32 random bytes are 256 bits; 43 base62 digits hold 256.03 bits, so none is lost.
  const random = base62(BigInt(`0x${randomBytes(32).toString('hex')}`), RANDOM_CHARS);
  const body = SECRET_PREFIX + secretReference(tokenid) + random;
  return body + checksum(body);
}

/**
 * The reference a well-formed secret carries (checksum included), or null:
 * a secret of another form, one made before references, or a malformed one.
 */
export function referenceOf(secret: string): string | null {
  if (secret.length !== SECRET_LENGTH || !plausibleSecret(secret)) return null;
  return secret.slice(SECRET_PREFIX.length, SECRET_PREFIX.length + REFERENCE_CHARS);
}

/**
 * Whether a secret that claims the prefix is one this project could have
 * made (length, alphabet, checksum). Secrets without the prefix are not
 * judged here: they are Proxmox's, or imported, and only their hash decides.
 */
export function plausibleSecret(secret: string): boolean {
  if (!secret.startsWith(SECRET_PREFIX)) return true;
  const length = secret.length;
  if (length !== SECRET_LENGTH && length !== UNREFERENCED_SECRET_LENGTH) return false;
  if (!/^tsk_[0-9A-Za-z]+$/.test(secret)) return false;
  const at = length - CHECK_CHARS;
  return checksum(secret.slice(0, at)) === secret.slice(at);
}
