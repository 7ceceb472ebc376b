/**
 * A flat copy of a string. V8 represents `header.slice(a, b)` as a view into
 * the header, which keeps the whole header — secret included — alive for as
 * long as the slice is. Anything kept beyond the request (cache keys, parsed
 * ids) must own its characters.
 */
export function ownCopy(value: string): string {
  // UTF-16 code units as they are: exact even for lone surrogates, which UTF-8 would replace.
  return Buffer.from(value, 'utf16le').toString('utf16le');
}
