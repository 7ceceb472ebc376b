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
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { ConfigError, quote } from '../errors.js';

/** Entries a list may hold: a restriction is a handful of networks, not a firewall. */
export const MAX_ALLOWED_IPS = 100;

/**
 * An address as bits: IPv4 as one 32-bit number, IPv6 as eight 16-bit
 * groups. Node's own parsers only (net, the URL serialiser for IPv6's
 * canonical text): the library reads user.cfg without the daemons' packages.
 */
type Address = { family: 4; value: number } | { family: 6; groups: number[] };

function parseAddress(text: string): Address | null {
  if (isIPv4(text)) return { family: 4, value: ipv4Bits(text, 0) };
  if (!isIPv6(text) || text.includes('%')) return null;
  // The WHATWG serialiser writes RFC 5952's form: lowercase, zeros compressed, IPv4 tails in hex.
  const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const [head = '', tail] = host.split('::');
  const part = (side: string) =>
    side === '' ? [] : side.split(':').map((g) => Number.parseInt(g, 16));
  const left = part(head);
  const right = tail === undefined ? [] : part(tail);
  const groups = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  return { family: 6, groups };
}

function ipv6Text(groups: readonly number[]): string {
  return new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
}

function ipv4Text(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** The address with only its first `bits` bits kept. */
function masked(address: Address, bits: number): Address {
  if (address.family === 4) {
    const size = 2 ** (32 - bits);
    return { family: 4, value: Math.floor(address.value / size) * size };
  }
  const groups = address.groups.map((group, i) => {
    const keep = Math.max(0, Math.min(16, bits - 16 * i));
    return keep === 0 ? 0 : group & ((0xffff << (16 - keep)) & 0xffff);
  });
  return { family: 6, groups };
}

/** '::ffff:a.b.c.d' (and a network of them of /96 or longer) as IPv4. */
function unmapped(address: Address, bits: number | null): [Address, number | null] {
  if (address.family === 6 && bits !== null && bits < 96) return [address, bits];
  if (address.family !== 6) return [address, bits];
  const g = address.groups;
  if (g[0] || g[1] || g[2] || g[3] || g[4] || g[5] !== 0xffff) return [address, bits];
  const value = (g[6] as number) * 65536 + (g[7] as number);
  return [{ family: 4, value }, bits === null ? null : bits - 96];
}

/** An entry as its network and prefix length; ConfigError for anything else. */
function parseEntry(entry: string): { address: Address; bits: number } {
  const [text = '', prefix, extra] = entry.split('/');
  const parsed = parseAddress(text);
  const max = parsed?.family === 4 ? 32 : 128;
  const given = prefix === undefined ? null : /^\d{1,3}$/.test(prefix) ? Number(prefix) : -1;
  if (parsed === null || extra !== undefined || given === -1 || (given ?? 0) > max) {
    throw new ConfigError('invalid', `allowed-ips: not an address or network: ${quote(entry)}`);
  }
  const [address, bits] = unmapped(parsed, given);
  const full = address.family === 4 ? 32 : 128;
  const length = bits ?? full;
  return { address: masked(address, length), bits: length };
}

/** One entry's canonical text: the address, or the network address and prefix length. */
function canonicalEntry(entry: string): string {
  const { address, bits } = parseEntry(entry);
  const text = address.family === 4 ? ipv4Text(address.value) : ipv6Text(address.groups);
  return bits === (address.family === 4 ? 32 : 128) ? text : `${text}/${bits}`;
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

  /** The last address asked about and the answer: a connection's requests repeat it. */
  #lastAddress: string | undefined = undefined;
  #lastAnswer = false;

  /** Whether a request from `address` (as a socket or a proxy reports it) may use the token. */
  allows(address: string | undefined): boolean {
    if (address === this.#lastAddress) return this.#lastAnswer;
    const answer = this.#check(address);
    this.#lastAddress = address;
    this.#lastAnswer = answer;
    return answer;
  }

  #check(address: string | undefined): boolean {
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
  const wide = parseEntry(outer);
  const narrow = parseEntry(inner);
  if (wide.address.family !== narrow.address.family || narrow.bits < wide.bits) return false;
  return JSON.stringify(masked(narrow.address, wide.bits)) === JSON.stringify(wide.address);
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
