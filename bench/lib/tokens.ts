/**
 * Many tokens quickly, for the scale and storm benchmarks. Every token gets
 * its own random secret and its own salted argon2id hash (so the file has its
 * real size and every hash really verifies), but with FAST_ARGON2 parameters:
 * hashing 100,000 secrets with the defaults (19 MiB, t=2, ~30 ms each) would
 * take most of an hour on 2 cores. The parameters change what a hash verify
 * costs, not the size of a hash string or what a cached verify does.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import argon2 from 'argon2';
import { RACY_WINDOW_NS } from '../../src/files/stamp.js';
import type { Argon2Params } from '../../src/hashing/params.js';
import { addToken, addUser, createUserConfig, writeUserConfig } from '../../src/index.js';
import { serializeShadow } from '../../src/shadow/file.js';
import { sleep } from './children.js';

/** argon2id, 64 KiB, one pass: ~0.1 ms per hash instead of ~30 ms. */
export const FAST_ARGON2: Argon2Params = Object.freeze({
  memoryCost: 64,
  timeCost: 1,
  parallelism: 1,
});

export interface BenchToken {
  id: string;
  secret: string;
  hash: string;
}

/** A random secret and its argon2id hash for every id, hashed on libuv's pool in batches. */
export async function makeTokens(ids: string[], params = FAST_ARGON2): Promise<BenchToken[]> {
  const tokens: BenchToken[] = [];
  const batch = 256;
  for (let i = 0; i < ids.length; i += batch) {
    const slice = ids.slice(i, i + batch);
    const made = await Promise.all(
      slice.map(async (id) => {
        const secret = randomUUID();
        const hash = await argon2.hash(secret, { type: argon2.argon2id, ...params });
        return { id, secret, hash };
      }),
    );
    tokens.push(...made);
  }
  return tokens;
}

/** token.shadow in the library's canonical format, mode 0600. */
export function writeShadowFile(file: string, tokens: Iterable<BenchToken>): void {
  const entries = new Map<string, string>();
  for (const t of tokens) entries.set(t.id, t.hash);
  writeFileSync(file, serializeShadow(entries), { mode: 0o600 });
}

/** user.cfg with `userid` and its tokens (not privilege-separated), mode 0600. */
export function writeUserCfg(file: string, userid: string, tokenNames: Iterable<string>): void {
  const config = createUserConfig();
  addUser(config, userid, { comment: 'benchmark' });
  for (const name of tokenNames) addToken(config, `${userid}!${name}`, { privsep: false });
  writeFileSync(file, writeUserConfig(config), { mode: 0o600 });
}

/**
 * Waits until files written at `writtenMs` (Date.now()) are older than the
 * library's racy window (src/files/stamp.ts), with 100 ms to spare: a reader
 * then trusts their stamp, as in steady state, instead of reading them again.
 */
export async function pastRacyWindow(writtenMs: number): Promise<void> {
  const windowMs = Number(RACY_WINDOW_NS / 1_000_000n);
  await sleep(Math.max(0, writtenMs + windowMs + 100 - Date.now()));
}
