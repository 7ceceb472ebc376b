/**
 * Free text in user.cfg (names, comments) is percent-encoded so that it cannot
 * contain the ':' field separator or a line break, like PVE::Tools::encode_text.
 *
 * PVE's safe set is 0x20-0x7e without ':', so it leaves ' ' and '%' alone; its
 * decoder then turns a literal "%41" back into "A". We also encode '%' and
 * whitespace, which makes decodeText(encodeText(s)) === s for every well-formed
 * string, and PVE's decoder still reads what we write.
 */

const HEX = '0123456789ABCDEF';
const utf8 = new TextEncoder();
// Not fatal: PVE decodes with Encode::decode('utf8', ...), which substitutes too.
const lenientUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function isSafeByte(byte: number): boolean {
  return byte > 0x20 && byte < 0x7f && byte !== 0x3a && byte !== 0x25;
}

/** UTF-8, then every byte outside printable ASCII, and ':' and '%', as %XX. */
export function encodeText(text: string): string {
  let out = '';
  for (const byte of utf8.encode(text)) {
    out += isSafeByte(byte)
      ? String.fromCharCode(byte)
      : `%${HEX[byte >> 4] ?? '0'}${HEX[byte & 15] ?? '0'}`;
  }
  return out;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** %XX to bytes (a '%' without two hex digits stays as is), then UTF-8, leniently. */
export function decodeText(data: string): string {
  if (!data.includes('%')) return data;
  const bytes: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const code = data.charCodeAt(i);
    if (code === 0x25 && i + 2 < data.length) {
      const high = hexValue(data.charCodeAt(i + 1));
      const low = hexValue(data.charCodeAt(i + 2));
      if (high >= 0 && low >= 0) {
        bytes.push(high * 16 + low);
        i += 2;
        continue;
      }
    }
    if (code < 0x80) {
      bytes.push(code);
    } else {
      const char = String.fromCodePoint(data.codePointAt(i) ?? code);
      bytes.push(...utf8.encode(char));
      i += char.length - 1;
    }
  }
  return lenientUtf8.decode(Uint8Array.from(bytes));
}
