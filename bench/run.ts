/**
 * The benchmark suite: every benchmark in one run, so that the figures and
 * their ratios come from the same machine state.
 *
 *   npm run bench                      # quick (< 3 min on 2 cores), without generation
 *   npm run bench:full                 # longer runs, 100,000 tokens, generation page
 *   node dist/bench/run.js --only http,flood [--full]
 *
 * Prints the tables as it goes, then the targets and how busy the machine was
 * with other work during each benchmark (on a shared 2-core VM that is the
 * main source of noise). Writes each benchmark's JSON, summary.json, latest.md
 * (all tables, ready for RESULTS.md) and http-flood.svg: into bench/results/
 * for --full, bench/results/quick/ otherwise, and for --only into an
 * only-<names>/ directory below that, so that a directory always holds one run.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as flood from './flood.js';
import * as generation from './generation.js';
import * as http from './http.js';
import { killTracked } from './lib/children.js';
import { type CpuUse, cpuAccount } from './lib/proc.js';
import { machineLine, resultsDir, writeResults } from './lib/stats.js';
import { type BenchOptions, type BenchResult, isMain, type Target } from './lib/suite.js';
import { type Bar, barChart } from './lib/svg.js';
import { printTable } from './lib/table.js';
import * as pools from './pools.js';
import * as revocation from './revocation.js';
import * as scale from './scale.js';
import * as storm from './storm.js';
import * as verify from './verify.js';

const BENCHMARKS: Record<string, (options: BenchOptions) => Promise<BenchResult>> = {
  verify: verify.run,
  generation: generation.run,
  scale: scale.run,
  revocation: revocation.run,
  http: http.run,
  flood: flood.run,
  storm: storm.run,
  pools: pools.run,
};

interface Outcome {
  name: string;
  seconds: number;
  cpu: CpuUse;
  result: BenchResult | null;
  error: string | null;
}

/** Left out of the quick suite (the page's load cost is also a step in verify); --only runs it. */
const FULL_ONLY = ['generation'];

function parseArgs(argv: string[]): { full: boolean; only: string[] } {
  const full = argv.includes('--full');
  const at = argv.indexOf('--only');
  const only =
    at >= 0
      ? (argv[at + 1] ?? '').split(',').filter(Boolean)
      : Object.keys(BENCHMARKS).filter((name) => full || !FULL_ONLY.includes(name));
  const unknown = only.filter((name) => !(name in BENCHMARKS));
  if (unknown.length > 0 || (at >= 0 && only.length === 0)) {
    throw new Error(
      `unknown benchmark(s) ${unknown.join(', ')}; known: ${Object.keys(BENCHMARKS).join(', ')}`,
    );
  }
  return { full, only };
}

/**
 * Writes <outDir>/http-flood.svg from the http and flood results of one run (either may be
 * missing); returns the file, or null when neither ran.
 */
export function chart(
  results: Array<{ name: string; data: Record<string, unknown> }>,
  outDir: string,
  caption = `${machineLine()}; ${new Date().toISOString()}`,
): string | null {
  const data = (name: string) => results.find((r) => r.name === name)?.data;
  const panels = [];
  const httpData = data('http') as { figures: http.HttpFigures[]; ratioCachedToNoAuth: number };
  if (httpData) {
    const [noauth, ...others] = httpData.figures;
    const labels = ['no auth', 'cached token', 'caching off,\n50 tokens', 'caching off,\n1 token'];
    const colors = ['#999999', '#4477aa', '#cc6677', '#ee99aa'];
    panels.push({
      title: 'GET /version, 2 API workers',
      unit: 'HTTP 200 responses per second (median of rounds)',
      bars: [noauth, ...others].map(
        (f, i): Bar => ({
          label: labels[i] as string,
          value: f?.okRps ?? 0,
          text: `${(f?.okRps ?? 0).toFixed(0)}/s`,
          color: colors[i] as string,
        }),
      ),
      line: {
        value: 0.95 * (noauth?.okRps ?? 0),
        label: `target: 95% of no auth (measured ${(httpData.ratioCachedToNoAuth * 100).toFixed(0)}%)`,
      },
    });
  }
  const floodData = data('flood') as {
    phases: Array<{ key: string; ratio: number; valid: { okRps: number } }>;
  };
  if (floodData) {
    const pick = [
      ['wrong-secret', 'wrong secrets\n1 source', '#cc6677'],
      ['unknown-id', 'unknown ids\n1 source', '#cc6677'],
      ['malformed', 'bad header\n1 source', '#999999'],
      ['wrong-secret-4', 'wrong secrets\n4 sources', '#ee99aa'],
      ['unknown-id-4', 'unknown ids\n4 sources', '#ee99aa'],
      ['malformed-4', 'bad header\n4 sources', '#bbbbbb'],
    ] as const;
    panels.push({
      title: 'Valid client under a flood',
      unit: 'its 200/s under flood / without flood (10 vs 200 connections)',
      bars: pick.map(([key, label, color]): Bar => {
        const phase = floodData.phases.find((p) => p.key === key);
        return { label, value: phase?.ratio ?? 0, text: (phase?.ratio ?? 0).toFixed(2), color };
      }),
      line: { value: 0.8, label: 'target 0.8 (one source; 0.6 for four)' },
    });
  }
  if (panels.length === 0) return null;
  const file = path.join(outDir, 'http-flood.svg');
  writeFileSync(file, barChart(panels, caption));
  return file;
}

async function main(): Promise<void> {
  const { full, only } = parseArgs(process.argv.slice(2));
  // One directory holds one run: a partial run (--only) gets its own, beside the suite's.
  const all = process.argv.indexOf('--only') < 0;
  const base = full ? resultsDir : path.join(resultsDir, 'quick');
  const outDir = all ? base : path.join(base, `only-${only.join('-')}`);
  const options: BenchOptions = { full, outDir };
  const command = `node dist/bench/run.js${full ? ' --full' : ''}${all ? '' : ` --only ${only.join(',')}`}`;
  const stop = (code: number, why: string) => {
    process.stderr.write(`\nbench: ${why}; stopping every child process\n`);
    killTracked();
    process.exit(code);
  };
  process.once('SIGINT', () => stop(130, 'interrupted'));
  process.once('SIGTERM', () => stop(143, 'terminated'));
  const limitMinutes = full ? 45 : 10;
  setTimeout(
    () => stop(1, `still running after ${limitMinutes} min`),
    limitMinutes * 60_000,
  ).unref();

  const started = performance.now();
  process.stdout.write(`${machineLine()}\n$ ${command}\n\n`);
  const outcomes: Outcome[] = [];
  for (const name of only) {
    const run = BENCHMARKS[name] as (options: BenchOptions) => Promise<BenchResult>;
    process.stdout.write(`=== ${name} ===\n`);
    const used = cpuAccount();
    const t0 = performance.now();
    let result: BenchResult | null = null;
    let error: string | null = null;
    try {
      result = await run(options);
    } catch (e) {
      error = e instanceof Error ? (e.stack ?? e.message) : String(e);
      process.stderr.write(`${name} failed: ${error}\n`);
    }
    const cpu = used();
    const seconds = (performance.now() - t0) / 1000;
    outcomes.push({ name, seconds, cpu, result, error });
    process.stdout.write(
      `(${name}: ${seconds.toFixed(1)} s; other processes on the machine used ` +
        `${cpu.otherCores.toFixed(2)} cores on average meanwhile)\n\n`,
    );
  }
  const totalSeconds = (performance.now() - started) / 1000;

  const targets: Target[] = outcomes.flatMap(
    (o) =>
      o.result?.targets ?? [
        { benchmark: o.name, target: '(benchmark failed)', measured: o.error ?? '', met: null },
      ],
  );
  const verdict = (t: Target) => (t.met === null ? '-' : t.met ? 'met' : 'NOT met');
  const targetTable = printTable(
    'Targets (judged on this run)',
    ['benchmark', 'target', 'measured', 'verdict'],
    targets.map((t) => [t.benchmark, t.target, t.measured.split('\n')[0] as string, verdict(t)]),
  );
  const loadTable = printTable(
    'Machine load per benchmark: cores busy on average (own = the benchmark, its children and ' +
      'daemons; other = everything else on the machine, i.e. noise; steal = taken by the hypervisor)',
    ['benchmark', 'seconds', 'own cores', 'other cores', 'steal cores', 'result'],
    outcomes.map((o) => [
      o.name,
      o.seconds.toFixed(1),
      o.cpu.ownCores.toFixed(2),
      o.cpu.otherCores.toFixed(2),
      o.cpu.stealCores.toFixed(2),
      o.error ? 'FAILED' : 'ok',
    ]),
  );
  const svg = chart(
    outcomes.flatMap((o) => (o.result ? [{ name: o.name, data: o.result.data }] : [])),
    outDir,
  );
  const summary = {
    machine: machineLine(),
    date: new Date().toISOString(),
    command,
    mode: full ? 'full' : 'quick',
    totalSeconds,
    targets,
    benchmarks: outcomes.map((o) => ({
      name: o.name,
      seconds: o.seconds,
      cpu: o.cpu,
      error: o.error,
    })),
  };
  writeResults('summary', summary, outDir);
  const markdown = [
    `# Benchmark run (${full ? 'full' : 'quick'})`,
    '',
    `Machine: ${machineLine()}. Date: ${summary.date}.`,
    '',
    '```sh',
    `npm run build:ts && ${command}   # ${totalSeconds.toFixed(0)} s`,
    '```',
    '',
    ...outcomes.flatMap((o) => [
      `## ${o.name}`,
      '',
      ...(o.result?.markdown.flatMap((m) => [m, '']) ?? [`FAILED: ${o.error}`, '']),
    ]),
    '## Targets',
    '',
    targetTable,
    '',
    loadTable,
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'latest.md'), markdown);
  process.stdout.write(
    `suite: ${totalSeconds.toFixed(1)} s; results in ${path.relative(process.cwd(), outDir) || '.'}/` +
      `${svg ? ` (chart: ${path.relative(process.cwd(), svg)})` : ''}\n`,
  );
  killTracked();
  process.exit(outcomes.some((o) => o.error) ? 1 : 0);
}

if (isMain(import.meta.url)) {
  main().catch((error) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : error}\n`);
    killTracked();
    process.exit(1);
  });
}
