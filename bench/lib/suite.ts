/** What every benchmark of the suite takes and gives back (see bench/run.ts). */
import { pathToFileURL } from 'node:url';
import { resultsDir } from './stats.js';

export interface BenchOptions {
  /** Longer runs, more rounds, bigger sizes (`--full`). */
  full: boolean;
  /** Where the JSON result goes. */
  outDir: string;
}

/** One of the targets, judged from figures measured in this run. */
export interface Target {
  benchmark: string;
  target: string;
  measured: string;
  /** null: nothing to judge (a figure reported without a target, or not measured). */
  met: boolean | null;
}

export interface BenchResult {
  name: string;
  /** The tables printed, as Markdown, for bench/results/.../latest.md. */
  markdown: string[];
  targets: Target[];
  /** Everything measured, also written as <outDir>/<name>.json. */
  data: Record<string, unknown>;
}

/** True when `moduleUrl` is the script node was started with (standalone run or child mode). */
export function isMain(moduleUrl: string): boolean {
  return moduleUrl === pathToFileURL(process.argv[1] ?? '').href;
}

/** Options of a standalone run of one benchmark file. */
export function standaloneOptions(outDir: string): BenchOptions {
  return { full: process.argv.includes('--full'), outDir };
}

/**
 * Runs the benchmark when its file is the script node was started with, or,
 * when the first argument names one of `modes`, that child mode with the
 * arguments after it (benchmarks start copies of themselves as children).
 */
export async function runWhenMain(
  moduleUrl: string,
  run: (options: BenchOptions) => Promise<unknown>,
  modes: Record<string, (args: string[]) => Promise<unknown>> = {},
): Promise<void> {
  if (!isMain(moduleUrl)) return;
  const mode = modes[process.argv[2] ?? ''];
  if (mode) await mode(process.argv.slice(3));
  else await run(standaloneOptions(resultsDir));
}
