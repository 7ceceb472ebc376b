/**
 * Scale: with 100, 10,000 (and 100,000 with --full) tokens in token.shadow,
 * all of them cached in one TokenShadow,
 *
 * - the cached verify time, for one token and cycling through all N (it must
 *   stay flat as N grows);
 * - the memory per cached entry beyond the id and the parsed file (target
 *   <= 128 bytes): heap (without JIT code) and ArrayBuffers after a full GC, before and after
 *   caching N - 1 more entries, minus what the cache's own copy of each id
 *   costs (measured alone: N copies made the same way), plus the digest slab
 *   (32 bytes per entry of capacity, allocated up front; here capacity = N);
 * - the time to revalidate after a generation change: a bare bump (the file
 *   is unchanged: one stat, then every entry checked against the snapshot),
 *   and a rotation of one token by another TokenShadow (a new file: re-read,
 *   parse, check every entry; exactly one entry must be dropped).
 *
 * Each size runs in a fresh child (`node --expose-gc`), so heaps do not mix.
 * Tokens have distinct secrets and salted hashes, made with FAST_ARGON2
 * (bench/lib/tokens.ts): the parameters change what filling the cache costs,
 * not what is measured. The files are written more than 2 s before they are
 * read, so the library's racy-timestamp rule (a file read within 2 s of its
 * last change is re-read every time) does not apply, as in steady use.
 *
 *   npx tsc -p . && node dist/bench/scale.js [--full]
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHeapSpaceStatistics } from 'node:v8';
import { GenerationPage, HashPool, Slot, TokenShadow } from '../src/index.js';
import { readShadow } from '../src/shadow/file.js';
import { ownCopy } from '../src/strings.js';
import { removeTempDir, spawnChannel, tempDir } from './lib/children.js';
import { fmt, machineLine, median, nsPerOp, stamp, writeResults } from './lib/stats.js';
import { type BenchOptions, type BenchResult, runWhenMain, type Target } from './lib/suite.js';
import { printTable } from './lib/table.js';
import { FAST_ARGON2, makeTokens, pastRacyWindow, writeShadowFile } from './lib/tokens.js';

const ENTRY_TARGET_BYTES = 128;
/** "Flat": the cached verify at the largest N within this factor of N = 100. */
const FLAT_FACTOR = 1.5;

interface SizeResult {
  n: number;
  fileBytes: number;
  fillSeconds: number;
  cachedSameNs: number;
  cachedCycleNs: number;
  /** Bytes per entry: the parsed file, the cache's heap share, the slab. */
  fileHeapPerEntry: number;
  cacheHeapPerEntry: number;
  /** The cache keeps its own copy of each id (ownCopy): the id's share of cacheHeapPerEntry. */
  idCopyPerEntry: number;
  slabPerEntry: number;
  bumpMs: number[];
  rotationMs: number[];
  readParseMs: number[];
  /** A wrong secret for a cached id (a miss: one hash verify), file older than 2 s. */
  missSteadyMs: number[];
  /** The same right after a write (the file's timestamps are racy: it is re-read first). */
  missRacyMs: number[];
  droppedPerRotation: number[];
  hashVerifiesDuringRevalidation: number;
}

// --- child: one size ---------------------------------------------------------------

/**
 * Live heap bytes after a full GC, without the code spaces (machine code the JIT installs
 * whenever its background compiles finish is not memory of the entries), plus ArrayBuffers.
 */
function memory(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
  const heap = getHeapSpaceStatistics()
    .filter((space) => !space.space_name.startsWith('code'))
    .reduce((n, space) => n + space.space_used_size, 0);
  return heap + process.memoryUsage().arrayBuffers;
}

async function child(dir: string, n: number, tokensFile: string, rounds: number): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const all = JSON.parse(readFileSync(tokensFile, 'utf8')) as Array<[string, string]>;
  const ids = all.slice(0, n).map((t) => t[0]);
  const secrets = all.slice(0, n).map((t) => t[1]);
  all.length = 0;
  const shadowPath = path.join(dir, 'token.shadow');
  const page = GenerationPage.open(path.join(dir, 'config-versions'));
  const pool = new HashPool({ threads: 2, maxQueue: 1024, argon2: FAST_ARGON2 });
  const fill = async (target: TokenShadow, from: number, to: number) => {
    const batch = 256;
    for (let i = from; i < to; i += batch) {
      const results = await Promise.all(
        ids
          .slice(i, Math.min(to, i + batch))
          .map((id, k) => target.verifySecret(id, secrets[i + k] as string)),
      );
      if (results.some((ok) => !ok)) throw new Error('a verify failed while filling');
    }
  };
  try {
    // Run every code path once on a throwaway instance first, so that code compiled by the
    // JIT while filling is not counted as memory of the entries.
    await fill(
      new TokenShadow({ path: shadowPath, page, pool, maxEntries: n }),
      0,
      Math.min(n, 2000),
    );
    const m0 = memory();
    const shadow = new TokenShadow({ path: shadowPath, page, pool, maxEntries: n });
    if ((await shadow.verifySecret(ids[0] as string, secrets[0] as string)) !== true) {
      throw new Error('first verify failed');
    }
    const m1 = memory();
    const fillStart = performance.now();
    await fill(shadow, 1, n);
    const fillSeconds = (performance.now() - fillStart) / 1000;
    const m2 = memory();
    if (shadow.stats().entries !== n) throw new Error(`${shadow.stats().entries} cached, not ${n}`);
    // What N copies of the ids cost alone (the array is allocated before measuring).
    const copies = new Array<string>(n).fill('');
    const m3 = memory();
    for (let i = 0; i < n; i++) copies[i] = ownCopy(ids[i] as string);
    const m4 = memory();
    const idCopyPerEntry = (m4 - m3) / n;
    copies.length = 0;

    const id0 = ids[0] as string;
    const secret0 = secrets[0] as string;
    let misses = 0;
    const cachedSameNs = nsPerOp(() => {
      if (shadow.verifyCached(id0, secret0) !== true) misses++;
    }, 1_000_000);
    const cycleOps = Math.max(1_000_000, n);
    const cachedCycleNs = nsPerOp((i) => {
      const k = i % n;
      if (shadow.verifyCached(ids[k] as string, secrets[k] as string) !== true) misses++;
    }, cycleOps);
    if (misses > 0) throw new Error(`${misses} cached verifies were not answered from the cache`);

    // Revalidation after a bare generation bump (file unchanged).
    const probeId = ids[1] ?? id0;
    const probeSecret = secrets[1] ?? secret0;
    const slowBefore = shadow.stats().slowVerifies;
    const bumpMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      page.increment(Slot.TOKEN_SHADOW);
      const start = performance.now();
      if ((await shadow.verifySecret(probeId, probeSecret)) !== true) throw new Error('probe');
      bumpMs.push(performance.now() - start);
    }
    // A miss (wrong secret for a cached id) while the file is older than the racy window.
    const missWith = async (into: number[]) => {
      for (let r = 0; r < 3; r++) {
        const start = performance.now();
        if (await shadow.verifySecret(probeId, randomUUID()))
          throw new Error('wrong secret accepted');
        into.push(performance.now() - start);
      }
    };
    let revalidationHashes = shadow.stats().slowVerifies - slowBefore;
    const missSteadyMs: number[] = [];
    await missWith(missSteadyMs);
    // Revalidation after another TokenShadow (standing for another process) rotated one token.
    const otherPage = GenerationPage.open(path.join(dir, 'config-versions'));
    const other = new TokenShadow({ path: shadowPath, page: otherPage, pool });
    const rotationMs: number[] = [];
    const droppedPerRotation: number[] = [];
    const readParseMs: number[] = [];
    const slowBeforeRotations = shadow.stats().slowVerifies;
    for (let r = 0; r < rounds && r + 2 < n; r++) {
      await other.setSecret(ids[r + 2] as string, randomUUID());
      const dropped = shadow.stats().invalidationsByGeneration;
      const start = performance.now();
      if ((await shadow.verifySecret(probeId, probeSecret)) !== true) throw new Error('probe');
      rotationMs.push(performance.now() - start);
      droppedPerRotation.push(shadow.stats().invalidationsByGeneration - dropped);
      const read = performance.now();
      await readShadow(shadowPath);
      readParseMs.push(performance.now() - read);
    }
    revalidationHashes += shadow.stats().slowVerifies - slowBeforeRotations;
    // The same misses right after that last write: now every one re-reads the file.
    const missRacyMs: number[] = [];
    await missWith(missRacyMs);
    otherPage.close();
    const slab = n * 32;
    const result: SizeResult = {
      n,
      fileBytes: statSync(shadowPath).size,
      fillSeconds,
      cachedSameNs,
      cachedCycleNs,
      fileHeapPerEntry: (m1 - m0 - slab) / n,
      cacheHeapPerEntry: n > 1 ? (m2 - m1) / (n - 1) : Number.NaN,
      idCopyPerEntry,
      slabPerEntry: slab / n,
      bumpMs,
      rotationMs,
      readParseMs,
      missSteadyMs,
      missRacyMs,
      droppedPerRotation,
      hashVerifiesDuringRevalidation: revalidationHashes,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await pool.close();
    page.close();
  }
}

// --- parent ---------------------------------------------------------------------

/** Heap figures per entry mean something only when N is large against the heap's own noise. */
const MIN_N_FOR_MEMORY = 1000;

/** Bytes per cached entry beyond the id: the cache's heap share without its id copy, plus the slab. */
function beyondId(r: SizeResult): number {
  return r.cacheHeapPerEntry - r.idCopyPerEntry + r.slabPerEntry;
}

function perEntry(r: SizeResult, bytes: number): string {
  return r.n >= MIN_N_FOR_MEMORY ? bytes.toFixed(0) : '-';
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const sizes = options.full ? [100, 10_000, 100_000] : [100, 10_000];
  const rounds = options.full ? 9 : 5;
  const max = Math.max(...sizes);
  const dir = tempDir('bench-scale-');
  try {
    const made = performance.now();
    const ids = Array.from({ length: max }, (_, i) => `scale@pve!t${String(i).padStart(6, '0')}`);
    const tokens = await makeTokens(ids);
    const hashSeconds = (performance.now() - made) / 1000;
    const tokensFile = path.join(dir, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify(tokens.map((t) => [t.id, t.secret])));
    for (const n of sizes) {
      mkdirSync(path.join(dir, String(n)));
      writeShadowFile(path.join(dir, String(n), 'token.shadow'), tokens.slice(0, n));
    }
    const written = Date.now();
    await pastRacyWindow(written);

    const script = fileURLToPath(import.meta.url);
    const results: SizeResult[] = [];
    for (const n of sizes) {
      const channel = spawnChannel(
        script,
        ['child', path.join(dir, String(n)), String(n), tokensFile, String(rounds)],
        { execArgv: ['--expose-gc'] },
      );
      try {
        results.push((await channel.next()) as SizeResult);
      } finally {
        await channel.close();
      }
      process.stdout.write(`  scale ${n}: done\n`);
    }

    const first = results[0] as SizeResult;
    const table = printTable(
      `token.shadow scale: all N tokens cached in one TokenShadow (capacity N); argon2id ` +
        `m=${FAST_ARGON2.memoryCost} KiB t=${FAST_ARGON2.timeCost} hashes; medians of ${rounds} ` +
        `revalidations (${machineLine()})`,
      [
        'tokens',
        'file KiB',
        'cached verify ns (same id)',
        'ns (cycling all N)',
        'x N=100',
        'B/entry: cache heap',
        '- its id copy',
        '+ slab',
        '= beyond the id',
        'parsed file B/entry',
        'revalidate, bump only ms',
        'revalidate, 1 rotated ms',
        'of which read+parse ms',
        'dropped/rotation',
        'miss ms (file > 2 s old)',
        'miss ms (file < 2 s old)',
      ],
      results.map((r) => [
        r.n.toLocaleString('en-US'),
        (r.fileBytes / 1024).toFixed(0),
        r.cachedSameNs.toFixed(0),
        r.cachedCycleNs.toFixed(0),
        (r.cachedCycleNs / first.cachedCycleNs).toFixed(2),
        perEntry(r, r.cacheHeapPerEntry),
        perEntry(r, -r.idCopyPerEntry),
        r.slabPerEntry.toFixed(0),
        perEntry(r, beyondId(r)),
        perEntry(r, r.fileHeapPerEntry),
        fmt(median(r.bumpMs)),
        fmt(median(r.rotationMs)),
        fmt(median(r.readParseMs)),
        [...new Set(r.droppedPerRotation)].join(','),
        fmt(median(r.missSteadyMs)),
        fmt(median(r.missRacyMs)),
      ]),
    );
    const note =
      `Making ${max.toLocaleString('en-US')} distinct hashes took ${hashSeconds.toFixed(1)} s; ` +
      `filling the cache: ${results.map((r) => `${r.n}: ${r.fillSeconds.toFixed(1)} s`).join(', ')}. ` +
      `Hash verifies during the revalidations: ${results.map((r) => r.hashVerifiesDuringRevalidation).join(', ')} (must be 0). ` +
      `Bytes per entry are not shown below ${MIN_N_FOR_MEMORY} tokens: the heap's own noise is larger. ` +
      'A miss is a wrong secret for a cached id (one hash verify with these fast parameters); ' +
      'within 2 s of a write to the file its timestamps are too recent to trust, and every miss re-reads it.';
    process.stdout.write(`${note}\n\n`);
    const data = {
      ...stamp(options),
      argon2: FAST_ARGON2,
      rounds,
      hashSeconds,
      results,
    };
    writeResults('scale', data, options.outDir);

    const last = results[results.length - 1] as SizeResult;
    const big = results.filter((r) => r.n >= MIN_N_FOR_MEMORY);
    const worstEntry = Math.max(...big.map(beyondId));
    const targets: Target[] = [
      {
        benchmark: 'scale',
        target: `cached verify flat in N, one token (largest N within ${FLAT_FACTOR}x of N = 100)`,
        measured: results.map((r) => `${r.n}: ${r.cachedSameNs.toFixed(0)} ns`).join(', '),
        met: last.cachedSameNs <= FLAT_FACTOR * first.cachedSameNs,
      },
      {
        benchmark: 'scale',
        target: `cached verify flat in N, cycling through all N tokens (within ${FLAT_FACTOR}x)`,
        measured: results.map((r) => `${r.n}: ${r.cachedCycleNs.toFixed(0)} ns`).join(', '),
        met: last.cachedCycleNs <= FLAT_FACTOR * first.cachedCycleNs,
      },
      {
        benchmark: 'scale',
        target: `memory per cached entry <= ${ENTRY_TARGET_BYTES} B beyond the id and parsed file`,
        measured: big
          .map(
            (r) =>
              `${r.n}: ${beyondId(r).toFixed(0)} B (+ ${r.idCopyPerEntry.toFixed(0)} B id copy)`,
          )
          .join(', '),
        met: worstEntry <= ENTRY_TARGET_BYTES,
      },
      {
        benchmark: 'scale',
        target: 'revalidation after a rotation drops only the rotated entry, hashes nothing',
        measured:
          `dropped per rotation: ${results.map((r) => [...new Set(r.droppedPerRotation)].join(',')).join(' / ')}; ` +
          `revalidate at ${last.n}: ${fmt(median(last.rotationMs))} ms`,
        met:
          results.every((r) => r.droppedPerRotation.every((d) => d === 1)) &&
          results.every((r) => r.hashVerifiesDuringRevalidation === 0),
      },
    ];
    return { name: 'scale', markdown: [table, note], targets, data };
  } finally {
    removeTempDir(dir);
  }
}

await runWhenMain(import.meta.url, run, {
  child: ([dir, n, tokensFile, rounds]) =>
    child(dir as string, Number(n), tokensFile as string, Number(rounds)),
});
