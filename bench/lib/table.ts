/**
 * A tiny table printer for benchmark output. The table is a Markdown pipe
 * table with padded columns, so it reads well in a terminal and can be pasted
 * into bench/RESULTS.md unchanged.
 */

export type Cell = string | number;

/** Integers print as they are, other numbers with one decimal. */
function formatCell(cell: Cell): string {
  if (typeof cell === 'string') return cell;
  if (Number.isInteger(cell)) return String(cell);
  return cell.toFixed(1);
}

/**
 * A column is right-aligned when every cell in it is a number, a numeric string
 * or '-' (no value).
 */
function isNumeric(cell: Cell): boolean {
  return typeof cell === 'number' || cell === '-' || /^[-+]?[\d.,]+%?$/.test(cell);
}

/** Formats the table, writes it (and a blank line) to stdout and returns it. */
export function printTable(title: string, headers: string[], rows: Cell[][]): string {
  const cells = rows.map((row) => headers.map((_, i) => formatCell(row[i] ?? '')));
  const widths = headers.map((header, i) =>
    Math.max(3, header.length, ...cells.map((row) => (row[i] as string).length)),
  );
  const right = headers.map(
    (_, i) => rows.length > 0 && rows.every((row) => isNumeric(row[i] ?? '0')),
  );
  const pad = (text: string, i: number): string =>
    right[i] ? text.padStart(widths[i] as number) : text.padEnd(widths[i] as number);
  const line = (parts: string[]): string => `| ${parts.join(' | ')} |`;
  const rule = widths.map((width, i) =>
    right[i] ? `${'-'.repeat(width - 1)}:` : '-'.repeat(width),
  );
  const text = [
    `${title}`,
    '',
    line(headers.map(pad)),
    line(rule),
    ...cells.map((row) => line(row.map(pad))),
  ].join('\n');
  process.stdout.write(`${text}\n\n`);
  return text;
}
