/**
 * The small grammars of user.cfg that are not user or token ids: group and role
 * ids, ACL paths, flags, expiry times, and the raw (unencoded) fields.
 */

const GROUP_ID = /^[A-Za-z0-9.\-_]+$/;
const ROLE_ID = /^[A-Za-z0-9.\-_]+$/;
const ACL_PATH_CHARS = /^[A-Za-z0-9.\-_/]+$/;
// Email and keys are stored verbatim, as PVE does, so they must not be able to
// break the line format.
const RAW_FIELD = /^[^\s:\p{Cc}\p{Cs}]*$/u;
const LONE_SURROGATE = /\p{Cs}/u;
const MAX_ID = 64;

export function isGroupId(value: string): boolean {
  return value.length <= MAX_ID && GROUP_ID.test(value);
}

export function isRoleId(value: string): boolean {
  return value.length <= MAX_ID && ROLE_ID.test(value);
}

/** The shape of a privilege name; whether it exists is the access configuration's call. */
export function isPrivilegeName(value: string): boolean {
  return value.length <= MAX_ID && ROLE_ID.test(value);
}

/** Email addresses and key lists: anything but whitespace, ':' and control characters. */
export function isRawField(value: string): boolean {
  return RAW_FIELD.test(value);
}

/** Free text is encoded when written, but a lone surrogate would not survive UTF-8. */
export function isWellFormedText(value: string): boolean {
  return !LONE_SURROGATE.test(value);
}

/**
 * PVE's normalize_path: collapses '//' and drops a trailing '/'. Unlike PVE, a
 * path that does not start with '/' is rejected rather than prefixed, and so is
 * a '.' or '..' segment, which PVE would keep as a literal name.
 */
export function normalizeAclPath(path: string): string | null {
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024) return null;
  if (!ACL_PATH_CHARS.test(path)) return null;
  const segments = path.split('/').filter((segment) => segment !== '');
  if (segments.some((segment) => segment === '.' || segment === '..')) return null;
  return `/${segments.join('/')}`;
}

/** '1' or '0'; an empty field gives `empty`. Anything else is null (invalid). */
export function parseFlag(value: string, empty: boolean): boolean | null {
  if (value === '') return empty;
  if (value === '1') return true;
  if (value === '0') return false;
  return null;
}

/** Epoch seconds as digits; empty is 0 (never). */
export function parseExpire(value: string): number | null {
  if (value === '') return 0;
  if (!/^\d+$/.test(value)) return null;
  const seconds = Number(value);
  return Number.isSafeInteger(seconds) ? seconds : null;
}

export function isExpire(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** PVE::Tools::split_list: ',', ';' and whitespace separate, empty items vanish. */
export function splitList(value: string): string[] {
  return value.split(/[,;\s]+/).filter((item) => item !== '');
}
