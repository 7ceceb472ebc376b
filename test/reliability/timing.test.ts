/**
 * Timing: an unknown token id must cost what a known id with a wrong secret
 * costs (the dummy verify), so that response times do not tell which ids
 * exist. Both go through Authenticator.authenticate (header parsing, user.cfg
 * check, TokenShadow), interleaved in random order, each with a fresh wrong
 * secret so nothing is cached. Reported: both medians and the two-sample
 * Kolmogorov-Smirnov statistic D with its critical value at alpha = 0.05.
 *
 * Quick mode: 200 each with cheap argon2 (512 KiB, t=1). Long mode: 2,000 each
 * with the real default parameters (19 MiB, t=2, p=1).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { makeLegacyHash } from '../../src/hashing/legacy.js';
import {
  AuthenticationError,
  Authenticator,
  addToken,
  addUser,
  DEFAULT_ARGON2,
  GenerationPage,
  HashPool,
  TokenShadow,
  UserConfigStore,
} from '../../src/index.js';
import { serializeShadow } from '../../src/shadow/file.js';
import { tempDir } from '../helpers/tmp.js';
import {
  FAST_ARGON2,
  type KsResult,
  kolmogorovSmirnov,
  LONG,
  median,
  newSeed,
  pick,
  prng,
  quantile,
  report,
} from './common.js';

const N = pick(200, 2000);
const ARGON2 = LONG ? DEFAULT_ARGON2 : FAST_ARGON2;
const KNOWN = 'timing@pve!known-token';
const LEGACY = 'timing@pve!legacy-token';
const UNKNOWN = 'nobody@pve!unknown-token';

type Series = 'unknown' | 'known' | 'legacy' | 'cached';

/** Filled by the measurement, read by the assertions (including the known-weakness one). */
let legacyVsUnknown: KsResult | null = null;

function fmt(ks: KsResult): string {
  return `D = ${ks.d.toFixed(3)} (critical ${ks.critical.toFixed(3)} at alpha 0.05, p = ${ks.p.toPrecision(2)})`;
}

describe('reliability: timing of unknown ids', () => {
  const pool = new HashPool({ threads: 1, maxQueue: 16, argon2: ARGON2 });
  after(() => pool.close());

  it(`an unknown id and a known id with a wrong secret are indistinguishable (${N} each)`, async () => {
    const dir = tempDir();
    const shadowPath = path.join(dir, 'token.shadow');
    const rightSecret = randomUUID();
    writeFileSync(
      shadowPath,
      serializeShadow(
        new Map([
          [KNOWN, await pool.hash(rightSecret)],
          // An imported Proxmox VE token keeps its sha256-crypt hash until it is used.
          [LEGACY, makeLegacyHash(randomUUID(), 'sha256-crypt')],
        ]),
      ),
    );
    const page = GenerationPage.open(path.join(dir, 'config-versions'));
    after(() => page.close());
    const users = new UserConfigStore({ path: path.join(dir, 'user.cfg'), page });
    await users.mutate((config) => {
      addUser(config, 'timing@pve', {});
      addToken(config, KNOWN, { privsep: false });
      addToken(config, LEGACY, { privsep: false });
    });
    const shadow = new TokenShadow({ path: shadowPath, page, pool });
    const auth = new Authenticator({ users, shadow });
    await shadow.warmUp();

    const ids: Record<Series, string> = {
      unknown: UNKNOWN,
      known: KNOWN,
      legacy: LEGACY,
      cached: KNOWN,
    };
    const once = async (series: Series): Promise<number> => {
      const secret = series === 'cached' ? rightSecret : randomUUID();
      const header = `PVEAPIToken=${ids[series]}=${secret}`;
      const started = process.hrtime.bigint();
      let ok = true;
      try {
        await auth.authenticate({ authorization: header });
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        ok = false;
      }
      const micros = Number(process.hrtime.bigint() - started) / 1000;
      assert.equal(ok, series === 'cached', `${series} authenticated: ${ok}`);
      return micros;
    };
    for (const series of ['unknown', 'known', 'legacy', 'cached'] as const) {
      for (let i = 0; i < 10; i++) await once(series);
    }
    const seed = newSeed();
    const random = prng(seed);
    const plan: Series[] = [
      ...Array<Series>(N).fill('unknown'),
      ...Array<Series>(N).fill('known'),
      ...Array<Series>(N).fill('legacy'),
      ...Array<Series>(Math.ceil(N / 10)).fill('cached'),
    ];
    for (let i = plan.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [plan[i], plan[j]] = [plan[j] as Series, plan[i] as Series];
    }
    const samples: Record<Series, number[]> = { unknown: [], known: [], legacy: [], cached: [] };
    const started = performance.now();
    for (const series of plan) samples[series].push(await once(series));
    const elapsed = performance.now() - started;

    const main = kolmogorovSmirnov(samples.unknown, samples.known);
    const control = kolmogorovSmirnov(samples.cached, samples.known);
    legacyVsUnknown = kolmogorovSmirnov(samples.unknown, samples.legacy);
    const describeSeries = (s: Series) =>
      `median ${(median(samples[s]) / 1000).toFixed(3)} ms, p90 ${(quantile(samples[s], 0.9) / 1000).toFixed(3)} ms`;
    const stats = shadow.stats();
    report(
      `timing (${LONG ? 'long' : 'quick'}: argon2id m=${ARGON2.memoryCost} KiB, t=${ARGON2.timeCost}; ` +
        `Authenticator in-process, random order, seed ${seed})`,
      [
        `unknown id, ${N} requests: ${describeSeries('unknown')}`,
        `known id, wrong secret, ${N} requests: ${describeSeries('known')}`,
        `Kolmogorov-Smirnov unknown vs known: ${fmt(main)}`,
        `control, cached right secret (${samples.cached.length}) vs known wrong: ${fmt(control)}`,
        `imported sha256-crypt token, wrong secret: ${describeSeries('legacy')}; ` +
          `vs unknown: ${fmt(legacyVsUnknown)} (see the known weakness below)`,
        `${stats.dummyVerifies} dummy verifies, ${stats.slowVerifies} hash verifies; ${(elapsed / 1000).toFixed(1)} s`,
      ],
    );
    assert.ok(stats.dummyVerifies >= N, 'every unknown id cost a dummy verify');
    // The statistic can tell distributions apart: the cached path is orders of magnitude faster.
    assert.ok(control.d > control.critical, `control not detected: ${fmt(control)}`);
    // Generous: the machine is shared and noisy; without the dummy verify D is close to 1.
    assert.ok(main.d < Math.max(0.25, 3 * main.critical), `distinguishable: ${fmt(main)}`);
  });

  it('known weakness: an imported legacy-hash token is distinguishable from an unknown id', {
    todo:
      'src/shadow/token-shadow.ts #dummyVerify hashes with the pool parameters, so an id whose ' +
      'stored hash has another cost (an imported $5$/$6$/$y$ hash, older argon2 parameters) ' +
      'answers in a different time than an unknown id',
  }, () => {
    assert.ok(legacyVsUnknown, 'the measurement ran');
    assert.ok(
      legacyVsUnknown.d < Math.max(0.25, 3 * legacyVsUnknown.critical),
      fmt(legacyVsUnknown),
    );
  });
});
