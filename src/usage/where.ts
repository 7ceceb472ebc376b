/**
 * What may be kept as where a token was last used. Both values end up in
 * last-used.json, etcd and the API's answers, so anything else a worker or
 * another host's record carries is dropped rather than stored: an address is
 * what net.isIP accepts (IPv4, or IPv6 with an optional zone), never a header
 * fragment that could hold a secret; a host is a cluster host name.
 */
import { isIP } from 'node:net';

/** Longer than any address isIP accepts with a sensible zone; bounds the check's work. */
const MAX_SOURCE_LENGTH = 64;

/** A host name as the cluster settings take it (src/cluster/keys.ts, which this layer may not import). */
const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isSourceAddress(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_SOURCE_LENGTH && isIP(value) !== 0;
}

export function isHostName(value: unknown): value is string {
  return typeof value === 'string' && HOST_NAME.test(value);
}

const MAPPED = '::ffff:';

/**
 * An address as last use shows it: an IPv4-mapped IPv6 address (a dual-stack
 * socket's view of an IPv4 client) as the IPv4 address, as allowed-ips treats it.
 */
export function shownAddress(address: string): string {
  if (!address.toLowerCase().startsWith(MAPPED)) return address;
  const v4 = address.slice(MAPPED.length);
  return isIP(v4) === 4 ? v4 : address;
}
