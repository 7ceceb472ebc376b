/**
 * A token's source restriction (issue 27): the addresses and networks its
 * requests may come from, as user.cfg and the API's `allowed-ips` write them
 * (comma-separated IPv4 and IPv6 addresses and CIDRs; an IPv4-mapped IPv6
 * address is its IPv4 address, as a dual-stack socket reports an IPv4 peer).
 * Empty means anywhere, Proxmox's behaviour.
 *
 * The check runs on every request of a restricted token, on the fast path:
 * so a list is compiled once (by its text) into IPv4 ranges compared as
 * integers, with a parse of the dotted quad by hand (tens of nanoseconds),
 * and a BlockList for IPv6. A token without a list never gets here.
 */
import { BlockList, isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { ConfigError, quote } from '../errors.js';

/** Entries a list may hold: a restriction is a handful of networks, not a firewall. */
export const MAX_ALLOWED_IPS = 100;

/** One entry's canonical text: the address, or the network address and prefix length. */
function canonicalEntry(entry: string): string {
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  let bits: number | null = null;
  try {
    if (entry.includes('/')) [address, bits] = ipaddr.parseCIDR(entry);
    else address = ipaddr.parse(entry);
    // Only the forms a person writes: ipaddr.js also takes '0x7f.1' and the like.
    if (
      !ipaddr.IPv4.isValidFourPartDecimal(entry.split('/')[0] ?? '') &&
      address.kind() === 'ipv4'
    ) {
      throw new Error('not dotted decimal');
    }
  } catch {
    throw new ConfigError('invalid', `allowed-ips: not an address or network: ${quote(entry)}`);
  }
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    if (bits === null || bits >= 96) {
      address = (address as ipaddr.IPv6).toIPv4Address();
      if (bits !== null) bits -= 96;
    }
  }
  const max = address.kind() === 'ipv4' ? 32 : 128;
  if (bits === null || bits === max) return address.toString();
  const network =
    address.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${bits}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${bits}`);
  return `${network.toString()}/${bits}`;
}

/**
 * The list in its canonical form (entries canonical, duplicates dropped, in
 * the order given), '' for none; ConfigError 'invalid' for anything else.
 */
export function canonicalAllowedIps(text: string): string {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length > MAX_ALLOWED_IPS) {
    throw new ConfigError('invalid', `allowed-ips: more than ${MAX_ALLOWED_IPS} entries`);
  }
  return [...new Set(entries.map(canonicalEntry))].join(',');
}

/** An IPv4 address's 32 bits, or -1 when `text` is not a dotted quad. */
function ipv4Bits(text: string, from: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else return -1;
  }
  if (digits === 0 || dots !== 3) return -1;
  return value * 256 + part;
}

const MAPPED = '::ffff:';

/** A compiled list: allows(address) for a request's source. */
export class SourceRestriction {
  readonly text: string;
  /** IPv4 networks as [first, last] pairs of 32-bit values. */
  readonly #ipv4: number[] = [];
  #ipv6: BlockList | null = null;

  constructor(text: string) {
    this.text = text;
    for (const entry of text.split(',')) {
      const [address = '', bits] = entry.split('/');
      if (isIPv4(address)) {
        const prefix = bits === undefined ? 32 : Number(bits);
        const size = 2 ** (32 - prefix);
        const first = Math.floor(ipv4Bits(address, 0) / size) * size;
        this.#ipv4.push(first, first + size - 1);
      } else {
        this.#ipv6 ??= new BlockList();
        if (bits === undefined) this.#ipv6.addAddress(address, 'ipv6');
        else this.#ipv6.addSubnet(address, Number(bits), 'ipv6');
      }
    }
  }

  /** Whether a request from `address` (as a socket or a proxy reports it) may use the token. */
  allows(address: string | undefined): boolean {
    if (address === undefined || address === '') return false;
    const v4 = ipv4Bits(address, address.startsWith(MAPPED) ? MAPPED.length : 0);
    if (v4 >= 0) {
      const ranges = this.#ipv4;
      for (let i = 0; i < ranges.length; i += 2) {
        if (v4 >= (ranges[i] as number) && v4 <= (ranges[i + 1] as number)) return true;
      }
      return false;
    }
    try {
      return this.#ipv6?.check(address, 'ipv6') ?? false;
    } catch {
      return false; // not an address at all: a proxy's garbage never matches
    }
  }
}

/** Compiled lists by text: few distinct lists, each compiled once per process. */
const compiled = new Map<string, SourceRestriction>();
const MAX_COMPILED = 4096;

/** The compiled restriction of a canonical list, null for '' (anywhere). */
export function sourceRestrictionOf(text: string): SourceRestriction | null {
  if (text === '') return null;
  let restriction = compiled.get(text);
  if (restriction === undefined) {
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    restriction = new SourceRestriction(text);
    compiled.set(text, restriction);
  }
  return restriction;
}

/** Whether every address `inner` (one canonical entry) covers is in `outer` (another). */
function covers(outer: string, inner: string): boolean {
  const [outerAddress, outerBits] = ipaddr.parseCIDR(
    outer.includes('/') ? outer : `${outer}/${outer.includes(':') ? 128 : 32}`,
  );
  const [innerAddress, innerBits] = ipaddr.parseCIDR(
    inner.includes('/') ? inner : `${inner}/${inner.includes(':') ? 128 : 32}`,
  );
  if (outerAddress.kind() !== innerAddress.kind() || innerBits < outerBits) return false;
  return innerAddress.match(outerAddress, outerBits);
}

/**
 * Whether changing a restriction from `before` to `after` (canonical lists)
 * only takes addresses away: what a token with privilege separation may do
 * to its own. '' is anywhere, so nothing narrows to it but itself.
 */
export function onlyNarrows(before: string, after: string): boolean {
  if (before === '') return true;
  if (after === '') return false;
  const outer = before.split(',');
  return after.split(',').every((entry) => outer.some((wider) => covers(wider, entry)));
}
