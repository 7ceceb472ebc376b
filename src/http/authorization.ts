/**
 * The Authorization header of an API token request, in the three forms the
 * Proxmox products use:
 *
 *   PVEAPIToken=USER@REALM!TOKEN=SECRET   (the last '=' ends the token id)
 *   PBSAPIToken USER@REALM!TOKEN:SECRET   (the first ':' ends the token id,
 *   PDMAPIToken USER@REALM!TOKEN:SECRET    the secret is percent-decoded)
 *
 * Each scheme may be followed by a space or '=', and scheme names are matched
 * case-sensitively, as Proxmox does. Every failure is one AuthenticationError
 * with a generic message; only its `reason` tells what went wrong.
 */
import { AuthenticationError } from '../errors.js';
import { parseTokenid, type Tokenid } from '../ids.js';
import { plausibleSecret } from '../secret-format.js';

/** The header forms of Proxmox VE, Backup Server and Datacenter Manager. */
export type TokenScheme = 'PVEAPIToken' | 'PBSAPIToken' | 'PDMAPIToken';

/** The three header forms, all accepted by default. */
export const TOKEN_SCHEMES: readonly TokenScheme[] = Object.freeze([
  'PVEAPIToken',
  'PBSAPIToken',
  'PDMAPIToken',
]);

/** Which header forms are accepted and how long a header and a secret may be. */
export interface AuthorizationOptions {
  /** The schemes to accept; default all three. */
  schemes?: readonly TokenScheme[];
  /** Longest header accepted, in UTF-16 code units; default 4096. */
  maxHeaderLength?: number;
  /** Longest secret accepted, in UTF-8 bytes after decoding; default 512. */
  maxSecretBytes?: number;
}

/** What an Authorization header carries: its form, the token id and the secret. */
export interface TokenCredentials {
  scheme: TokenScheme;
  tokenid: string;
  secret: string;
}

/** The credentials with the token id already parsed, for authentication to carry on. */
export interface ParsedCredentials {
  scheme: TokenScheme;
  id: Tokenid;
  secret: string;
}

/** Longest Authorization header accepted by default, in UTF-16 code units. */
export const DEFAULT_MAX_HEADER_LENGTH = 4096;
/** Longest secret accepted by default, in UTF-8 bytes. */
export const DEFAULT_MAX_SECRET_BYTES = 512;

// Nothing a credential may contain: whitespace, control characters, non-ASCII.
// Sticky, so it checks the header from the credentials on without a slice.
const CREDENTIALS = /[\x21-\x7e]+$/y;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function fail(reason: ConstructorParameters<typeof AuthenticationError>[0]): never {
  throw new AuthenticationError(reason);
}

/** %XX escapes to bytes, then UTF-8; a stray '%' or invalid UTF-8 is an error. */
function percentDecode(text: string): string {
  if (!text.includes('%')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x25) {
      bytes.push(code);
      continue;
    }
    const hex = text.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) fail('malformed-header');
    bytes.push(Number.parseInt(hex, 16));
    i += 2;
  }
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return fail('malformed-header');
  }
}

function single(value: string | string[] | undefined): string {
  if (Array.isArray(value)) {
    if (value.length === 0) fail('missing-header');
    if (value.length > 1) fail('malformed-header');
    return single(value[0]);
  }
  if (typeof value !== 'string' || value === '') fail('missing-header');
  return value;
}

/**
 * The token id and the secret of `header`, whose credentials start at
 * `start` (after the scheme and its separator). For PVEAPIToken the last '='
 * ends the id; for the others the first ':' does and the secret is
 * percent-decoded.
 */
function splitCredentials(scheme: TokenScheme, header: string, start: number): [string, string] {
  const at = scheme === 'PVEAPIToken' ? header.lastIndexOf('=') : header.indexOf(':', start);
  if (at <= start || at === header.length - 1) fail('malformed-header');
  const tokenid = header.slice(start, at);
  const secret = header.slice(at + 1);
  if (scheme === 'PVEAPIToken') return [tokenid, secret];
  const decoded = percentDecode(secret);
  // A decoded control character (%00 above all) has no place in a secret: C
  // code downstream (crypt_r) would stop at a NUL.
  if (/\p{Cc}/u.test(decoded)) fail('malformed-header');
  return [tokenid, decoded];
}

/** The scheme `header` starts with; a loop, not find(): this runs on every request. */
function schemeOf(header: string): TokenScheme | undefined {
  for (const name of TOKEN_SCHEMES) if (header.startsWith(name)) return name;
  return undefined;
}

/** Where the credentials of a PVEAPIToken header start: after the scheme and its separator. */
export const PVE_CREDENTIALS_START = 'PVEAPIToken'.length + 1;

/**
 * Where a PVEAPIToken header's token id ends (the index of the '=' before the
 * secret; the id starts at PVE_CREDENTIALS_START), or -1 when the header is
 * not of that form or exceeds `limits`. Nothing else is checked: only for a
 * caller that proves both parts another way (the Authenticator's memo of
 * tokens it accepted, with the verified-secret cache, which hold only parts
 * that passed parseCredentials).
 */
export function pveCredentialsSplit(
  header: string,
  limits: { maxHeaderLength: number; maxSecretBytes: number },
): number {
  if (header.length > limits.maxHeaderLength || !header.startsWith('PVEAPIToken')) return -1;
  const separator = header[PVE_CREDENTIALS_START - 1];
  if (separator !== '=' && separator !== ' ') return -1;
  const at = header.lastIndexOf('=');
  if (at <= PVE_CREDENTIALS_START || header.length - at - 1 > limits.maxSecretBytes) return -1;
  return at;
}

/** What a request looks like to `authorizationOf`: Node's IncomingMessage is one. */
export interface RequestHeaders {
  headers: { authorization?: string | string[] | undefined };
  /** Name, value, name, value...: every header as received. */
  rawHeaders?: readonly string[];
}

/**
 * The Authorization header of a request, every value of it. Node keeps only
 * the first `authorization` header in `headers` and drops the rest, so the
 * raw headers are what tells whether there was more than one (a proxy reading
 * the last one would disagree about who the caller is): then all of them are
 * returned, and `parseAuthorizationHeader` refuses the array.
 */
export function authorizationOf(request: RequestHeaders): string | string[] | undefined {
  const raw = request.rawHeaders;
  if (raw === undefined) return request.headers.authorization;
  // One value (the usual case) without allocating a list for it.
  let first: string | undefined;
  let more: string[] | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    // The two usual spellings compare without allocating a lower-cased copy.
    if (
      name.length === 13 &&
      (name === 'authorization' ||
        name === 'Authorization' ||
        name.toLowerCase() === 'authorization')
    ) {
      const value = raw[i + 1] as string;
      if (first === undefined) first = value;
      else if (more === undefined) more = [first, value];
      else more.push(value);
    }
  }
  return more ?? first;
}

/**
 * Reads the token id and secret from an Authorization header value (or the
 * array some frameworks give; more than one value is refused). Throws
 * AuthenticationError; nothing here checks that the token exists.
 */
export function parseAuthorizationHeader(
  value: string | string[] | undefined,
  options: AuthorizationOptions = {},
): TokenCredentials {
  const { scheme, id, secret } = parseCredentials(value, options);
  return { scheme, tokenid: id.authid, secret };
}

/** parseAuthorizationHeader, answering the parsed token id. */
export function parseCredentials(
  value: string | string[] | undefined,
  options: AuthorizationOptions = {},
): ParsedCredentials {
  const header = single(value);
  if (header.length > (options.maxHeaderLength ?? DEFAULT_MAX_HEADER_LENGTH)) fail('too-long');
  const scheme = schemeOf(header);
  const separator = scheme === undefined ? undefined : header[scheme.length];
  if (scheme === undefined || (separator !== ' ' && separator !== '=')) fail('unknown-scheme');
  if (!(options.schemes ?? TOKEN_SCHEMES).includes(scheme)) fail('disabled-scheme');
  const start = scheme.length + 1;
  CREDENTIALS.lastIndex = start;
  if (!CREDENTIALS.test(header)) fail('malformed-header');
  const [tokenid, secret] = splitCredentials(scheme, header, start);
  const maxSecret = options.maxSecretBytes ?? DEFAULT_MAX_SECRET_BYTES;
  // Printable ASCII is one byte a character; only a percent-decoded secret can be longer in UTF-8.
  const secretBytes = scheme === 'PVEAPIToken' ? secret.length : Buffer.byteLength(secret, 'utf8');
  if (secretBytes > maxSecret) fail('too-long');
  if (secret === '') fail('malformed-header');
  // A secret in this project's form with a wrong checksum is refused here, before any lookup
  // or hash: the same answer and the same work whatever the token id (src/secret-format.ts).
  if (!plausibleSecret(secret)) fail('bad-checksum');
  let id: Tokenid;
  try {
    id = parseTokenid(tokenid);
  } catch {
    return fail('invalid-id');
  }
  return { scheme, id, secret };
}
