/**
 * A small bar chart as SVG text, no dependency: panels side by side, each
 * with its bars, value labels and an optional dashed target line.
 */

export interface Bar {
  label: string;
  value: number;
  /** Printed above the bar (defaults to the value). */
  text?: string;
  /** Fill colour. */
  color?: string;
}

export interface Panel {
  title: string;
  /** Axis caption under the title. */
  unit: string;
  bars: Bar[];
  /** A dashed horizontal line, e.g. a target. */
  line?: { value: number; label: string };
}

const WIDTH = 420;
const HEIGHT = 320;
const TOP = 64;
const BOTTOM = 64;
const LEFT = 20;

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A panel is at least WIDTH wide, wider when it has many bars. */
function widthOf(p: Panel): number {
  return Math.max(WIDTH, 2 * LEFT + 120 * p.bars.length);
}

function panel(p: Panel, x0: number): string {
  const WIDTH = widthOf(p);
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const max = Math.max(...p.bars.map((b) => b.value), p.line?.value ?? 0) * 1.15 || 1;
  const slot = (WIDTH - 2 * LEFT) / p.bars.length;
  const barWidth = Math.min(90, slot * 0.6);
  const y = (v: number) => TOP + plotHeight - (v / max) * plotHeight;
  const parts: string[] = [
    `<text x="${x0 + WIDTH / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${xmlEscape(p.title)}</text>`,
    `<text x="${x0 + WIDTH / 2}" y="42" text-anchor="middle" font-size="12" fill="#555">${xmlEscape(p.unit)}</text>`,
    `<line x1="${x0 + LEFT}" y1="${y(0)}" x2="${x0 + WIDTH - LEFT}" y2="${y(0)}" stroke="#333"/>`,
  ];
  p.bars.forEach((b, i) => {
    const cx = x0 + LEFT + slot * i + slot / 2;
    const top = y(b.value);
    parts.push(
      `<rect x="${(cx - barWidth / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${barWidth.toFixed(1)}" ` +
        `height="${(y(0) - top).toFixed(1)}" fill="${b.color ?? '#4477aa'}"/>`,
      `<text x="${cx.toFixed(1)}" y="${(top - 6).toFixed(1)}" text-anchor="middle" font-size="12">${xmlEscape(b.text ?? String(b.value))}</text>`,
    );
    b.label.split('\n').forEach((line, k) => {
      parts.push(
        `<text x="${cx.toFixed(1)}" y="${y(0) + 18 + 14 * k}" text-anchor="middle" font-size="12">${xmlEscape(line)}</text>`,
      );
    });
  });
  if (p.line) {
    const ly = y(p.line.value).toFixed(1);
    parts.push(
      `<line x1="${x0 + LEFT}" y1="${ly}" x2="${x0 + WIDTH - LEFT}" y2="${ly}" stroke="#cc3311" stroke-dasharray="6 4"/>`,
      `<text x="${x0 + WIDTH - LEFT}" y="${(Number(ly) - 5).toFixed(1)}" text-anchor="end" font-size="11" fill="#cc3311">${xmlEscape(p.line.label)}</text>`,
    );
  }
  return parts.join('\n  ');
}

/** Panels side by side, with a caption line at the bottom. */
export function barChart(panels: Panel[], caption: string): string {
  const width = panels.reduce((n, p) => n + widthOf(p), 0);
  const height = HEIGHT + 24;
  const offsets = panels.map((_, i) => panels.slice(0, i).reduce((n, p) => n + widthOf(p), 0));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `  <rect width="${width}" height="${height}" fill="white"/>`,
    ...panels.map((p, i) => `  ${panel(p, offsets[i] ?? 0)}`),
    `  <text x="${width / 2}" y="${height - 10}" text-anchor="middle" font-size="11" fill="#555">${xmlEscape(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
