/**
 * Node 24's built-in crypto.argon2 against node-argon2 (the binding the hash
 * pool uses), on the parameters we write (argon2id, 19 MiB, t=2, p=1): one
 * verify at a time (latency) and 4 at once (throughput; both run on libuv's
 * thread pool). A verify with crypto.argon2 is a hash with the stored salt and
 * a constant-time compare, as node-argon2 does inside its binding.
 *
 *   npx tsc -p . && <node 24>/bin/node dist/bench/argon2.js [rounds]
 *
 * Prints one table. Without crypto.argon2 (Node < 24.7) it says so and stops.
 */
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import argon2 from 'argon2';
import { DEFAULT_ARGON2 } from '../src/index.js';
import { machineLine, median } from './lib/stats.js';
import { printTable } from './lib/table.js';

type Argon2Fn = (
  algorithm: 'argon2id',
  parameters: {
    message: string;
    nonce: Buffer;
    parallelism: number;
    tagLength: number;
    memory: number;
    passes: number;
  },
  callback: (error: Error | null, tag: Buffer) => void,
) => void;

const builtIn = (crypto as unknown as { argon2?: Argon2Fn }).argon2;
const rounds = Number(process.argv[2] ?? 40);
const secret = crypto.randomUUID();

/** The stored PHC string's parts, as node-argon2 wrote them. */
function parsePhc(hash: string) {
  const [, , , params, salt, tag] = hash.split('$');
  const p = Object.fromEntries((params ?? '').split(',').map((kv) => kv.split('=')));
  return {
    memory: Number(p.m),
    passes: Number(p.t),
    parallelism: Number(p.p),
    nonce: Buffer.from(salt ?? '', 'base64'),
    tag: Buffer.from(tag ?? '', 'base64'),
  };
}

function builtInVerify(fn: Argon2Fn, hash: string, candidate: string): Promise<boolean> {
  const { tag, ...parameters } = parsePhc(hash);
  return new Promise((resolve, reject) => {
    fn('argon2id', { message: candidate, tagLength: tag.length, ...parameters }, (error, out) =>
      error ? reject(error) : resolve(crypto.timingSafeEqual(out, tag)),
    );
  });
}

/**
 * Median ms of one verify for each implementation, taken in alternation
 * (a, b, b, a, ...) so that a busy machine weighs on both alike.
 */
async function latencies(verifies: Array<() => Promise<boolean>>): Promise<number[]> {
  const times = verifies.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) {
    const order =
      i % 2 === 0 ? verifies.map((_, j) => j) : verifies.map((_, j) => verifies.length - 1 - j);
    for (const j of order) {
      const start = performance.now();
      if (!(await (verifies[j] as () => Promise<boolean>)())) throw new Error('verify failed');
      (times[j] as number[]).push(performance.now() - start);
    }
  }
  return times.map(median);
}

/** Verifies per second with `parallel` in flight, in alternating blocks of `parallel * 2`. */
async function throughputs(
  verifies: Array<() => Promise<boolean>>,
  parallel: number,
): Promise<number[]> {
  const spent = verifies.map(() => 0);
  const blocks = Math.max(1, Math.floor(rounds / 4));
  for (let i = 0; i < blocks; i++) {
    for (const [j, verify] of verifies.entries()) {
      const start = performance.now();
      await Promise.all(
        Array.from({ length: parallel * 2 }, async () => {
          if (!(await verify())) throw new Error('verify failed');
        }),
      );
      spent[j] = (spent[j] as number) + performance.now() - start;
    }
  }
  return spent.map((ms) => (blocks * parallel * 2) / (ms / 1000));
}

if (!builtIn) {
  console.log(`crypto.argon2 is not available on Node ${process.version} (it came in 24.7)`);
} else {
  const hash = await argon2.hash(secret, { type: argon2.argon2id, ...DEFAULT_ARGON2 });
  const binding = () => argon2.verify(hash, secret);
  const node = () => builtInVerify(builtIn, hash, secret);
  if (!(await node()) || (await builtInVerify(builtIn, hash, `${secret}x`))) {
    throw new Error('crypto.argon2 disagrees with node-argon2');
  }
  const names = ['node-argon2 0.45 (argon2.verify)', 'crypto.argon2 (Node built-in)'];
  const verifies = [binding, node];
  await latencies(verifies); // warm-up
  const latency = await latencies(verifies);
  const rate = await throughputs(verifies, 4);
  const rows = names.map((name, i) => [name, latency[i] as number, rate[i] as number]);
  printTable(
    `argon2id verify, m=${DEFAULT_ARGON2.memoryCost} KiB t=${DEFAULT_ARGON2.timeCost} p=${DEFAULT_ARGON2.parallelism}; ${rounds} rounds; ${machineLine()}`,
    ['implementation', 'median ms (one at a time)', 'verifies/s (4 at once)'],
    rows,
  );
}
