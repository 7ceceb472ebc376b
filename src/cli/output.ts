/**
 * What tokenctl prints, in pveum's `--output-format`s: `text` (tables with
 * borders, or without with --noborder, headers unless --noheader) for
 * people, and `json`, `json-pretty` and `yaml` (the `yaml` package) for
 * scripts. Column widths are terminal columns, measured with `string-width`,
 * so that a name in CJK characters or with an emoji keeps the table aligned.
 * Table cells are escaped, so that a comment in user.cfg cannot move the
 * cursor, fake a line or reorder text on the administrator's terminal.
 */
import stringWidth from 'string-width';
import YAML from 'yaml';

export type OutputFormat = 'text' | 'json' | 'json-pretty' | 'yaml';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['text', 'json', 'json-pretty', 'yaml'];

/** `table`, tokenctl's name for `text` before it followed pveum, is still understood. */
export function outputFormatOf(value: string): OutputFormat {
  return value === 'table' ? 'text' : (value as OutputFormat);
}

export interface TextStyle {
  border: boolean;
  header: boolean;
  /** Box-drawing characters (a UTF-8 terminal) or ASCII. */
  unicode: boolean;
}

export interface Column<T> {
  header: string;
  cell: (row: T) => string;
}

// Control characters, line/paragraph separators and bidirectional overrides.
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Pads to `width` terminal columns (not UTF-16 code units). */
function pad(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - stringWidth(text)));
}

/** Whether the locale says UTF-8, as pveum decides between box drawing and ASCII. */
export function utf8Locale(env: NodeJS.ProcessEnv = process.env): boolean {
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || '';
  return /utf-?8/i.test(locale);
}

const BOX = {
  unicode: { top: '┌─┬─┐', head: '╞═╪═╡', mid: '├─┼─┤', bottom: '└─┴─┘', side: '│' },
  ascii: { top: '+-+-+', head: '+=+=+', mid: '+-+-+', bottom: '+-+-+', side: '|' },
};

/** One horizontal rule from a 5-character pattern: left, fill, joint, fill, right. */
function rule(pattern: string, widths: number[]): string {
  const [left, fill, joint, , right] = [...pattern] as [string, string, string, string, string];
  return `${left}${widths.map((w) => fill.repeat(w + 2)).join(joint)}${right}`;
}

/** Cells as lines: boxed like pveum's, or columns two spaces apart with no trailing blanks. */
function layout(header: string[], body: string[][], style: TextStyle): string {
  const lines = style.header ? [header, ...body] : body;
  if (lines.length === 0) return '';
  const widths = header.map((_, i) => Math.max(...lines.map((l) => stringWidth(l[i] ?? ''))));
  if (!style.border) {
    return lines
      .map(
        (line) =>
          `${line
            .map((cell, i) => pad(cell, widths[i] ?? 0))
            .join('  ')
            .trimEnd()}\n`,
      )
      .join('');
  }
  const box = style.unicode ? BOX.unicode : BOX.ascii;
  const row = (line: string[]) =>
    `${box.side} ${line.map((cell, i) => pad(cell, widths[i] ?? 0)).join(` ${box.side} `)} ${box.side}`;
  const out = [rule(box.top, widths)];
  if (style.header) out.push(row(header), rule(box.head, widths));
  body.forEach((line, i) => {
    if (i > 0) out.push(rule(box.mid, widths));
    out.push(row(line));
  });
  out.push(rule(box.bottom, widths));
  return out.map((line) => `${line}\n`).join('');
}

export function renderTable<T>(
  rows: readonly T[],
  columns: readonly Column<T>[],
  style: TextStyle,
): string {
  return layout(
    columns.map((c) => c.header),
    rows.map((row) => columns.map((c) => printable(c.cell(row)))),
    style,
  );
}

/**
 * One object: a KEY/VALUE table as pveum prints one, or without borders
 * `name  value` lines (no header: a record needs none).
 */
export function renderRecord(
  fields: ReadonlyArray<readonly [string, string]>,
  style: TextStyle,
): string {
  const body = fields.map(([name, value]) => [name, printable(value)]);
  return layout(['key', 'value'], body, style.border ? style : { ...style, header: false });
}

/** The data itself, for scripts. */
export function renderData(value: unknown, format: Exclude<OutputFormat, 'text'>): string {
  if (format === 'yaml') return YAML.stringify(value ?? null);
  return `${JSON.stringify(value ?? null, null, format === 'json-pretty' ? 2 : undefined)}\n`;
}

export function yesNo(value: boolean | number): string {
  return value ? 'yes' : 'no';
}
