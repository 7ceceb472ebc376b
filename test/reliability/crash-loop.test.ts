/**
 * Crash loops (invariant I2): a writer doing token create, rotate and delete
 * and user.cfg saves is killed with SIGKILL at random instants, again and
 * again. After every kill both files must parse, every acknowledged change must
 * be there (acknowledged secrets verify, acknowledged deletes stay deleted),
 * temp files the dead writer left must be gone after the next writer's first
 * mutation of that file, and the next writer must get the lock.
 *
 * Several independent lanes (each its own directory) run at once, so the ~2 s
 * a kill costs when it lands while the lock is held (proper-lockfile's minimum
 * stale time) overlaps with the other lanes' work.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { GenerationPage, HashPool, parseUserConfig } from '../../src/index.js';
import { parseShadow } from '../../src/shadow/file.js';
import { fixture } from '../helpers/children.js';
import { tempDir } from '../helpers/tmp.js';
import {
  LONG,
  median,
  newSeed,
  pick,
  prng,
  randomInt,
  report,
  seconds,
  spawnLines,
} from './common.js';

const KILLS = pick(50, 1000);
const LANES = pick(10, 10);
const USER = 'crash@pve';
const writer = fixture('reliability-writer');

type Message = Record<string, unknown> & { t: string; f?: 'shadow' | 'cfg'; op?: string };

interface ShadowEntry {
  /** The acknowledged secret; null when an unacknowledged set may have replaced it. */
  secret: string | null;
  /** The hash the secret was last verified against, so an unchanged entry is not hashed again. */
  verified: string | null;
}

interface LaneResult {
  kills: number;
  acks: number;
  /** Acknowledged changes missing or altered after a kill. */
  lost: string[];
  /** Everything else that must not happen: unparseable files, warnings, stray temps, errors. */
  problems: string[];
  /** Stray temps left when the lane ended (must be none). */
  tempsLeft: number;
  killsHoldingLock: number;
  killsLeavingTemps: number;
  tempsRemoved: number;
  unackedApplied: number;
  verifies: number;
  /** ms from "ready" to the first acknowledgment, after a kill that left a lock behind / did not. */
  recoveryLocked: number[];
  recoveryFree: number[];
}

async function runLane(
  dir: string,
  kills: number,
  seed: number,
  pool: HashPool,
  lane: number,
): Promise<LaneResult> {
  const random = prng(seed);
  const files = {
    shadow: path.join(dir, 'token.shadow'),
    cfg: path.join(dir, 'user.cfg'),
  };
  GenerationPage.open(path.join(dir, 'config-versions')).close();
  const shadowModel = new Map<string, ShadowEntry>();
  const cfgModel = { user: false, comment: '', tokens: new Map<string, string>() };
  const pendingTemps = { shadow: new Set<string>(), cfg: new Set<string>() };
  const result: LaneResult = {
    kills: 0,
    acks: 0,
    lost: [],
    problems: [],
    tempsLeft: 0,
    killsHoldingLock: 0,
    killsLeavingTemps: 0,
    tempsRemoved: 0,
    unackedApplied: 0,
    verifies: 0,
    recoveryLocked: [],
    recoveryFree: [],
  };
  const lost = (what: string) => result.lost.push(`lane ${lane} (seed ${seed}): ${what}`);
  const problem = (what: string) => result.problems.push(`lane ${lane} (seed ${seed}): ${what}`);

  const applyAck = (m: Message) => {
    result.acks++;
    if (m.f === 'shadow') {
      const id = m.id as string;
      if (m.op === 'set') shadowModel.set(id, { secret: m.secret as string, verified: null });
      else shadowModel.delete(id);
    } else {
      cfgModel.user = true;
      if (m.op === 'put') cfgModel.tokens.set(m.name as string, m.comment as string);
      else if (m.op === 'rm') cfgModel.tokens.delete(m.name as string);
      else cfgModel.comment = m.comment as string;
    }
    // This mutation of the file ran removeStrayTemps under the lock: a dead writer's temps are gone.
    const pending = pendingTemps[m.f as 'shadow' | 'cfg'];
    for (const name of pending) {
      if (existsSync(path.join(dir, name))) problem(`temp ${name} survived a later mutation`);
    }
    result.tempsRemoved += pending.size;
    pending.clear();
  };

  /** Compares the files with the model; the one unacknowledged intent may or may not have happened. */
  const check = async (inflight: Message | null) => {
    const shadowText = existsSync(files.shadow) ? readFileSync(files.shadow, 'utf8') : '{}';
    let onDisk: Map<string, string>;
    try {
      onDisk = parseShadow(files.shadow, shadowText);
    } catch (error) {
      problem(`token.shadow does not parse: ${error}`);
      return;
    }
    const shadowInflight = inflight?.f === 'shadow' ? inflight : null;
    for (const id of new Set([...shadowModel.keys(), ...onDisk.keys()])) {
      const model = shadowModel.get(id);
      const hash = onDisk.get(id);
      const mayHaveApplied = shadowInflight?.id === id;
      if (model && hash !== undefined) {
        if (model.secret === null || model.verified === hash) continue;
        result.verifies++;
        if (await pool.verify(hash, model.secret)) {
          model.verified = hash;
        } else if (mayHaveApplied && shadowInflight?.op === 'set') {
          shadowModel.set(id, { secret: null, verified: null });
          result.unackedApplied++;
        } else {
          lost(`${id}: the acknowledged secret does not verify`);
        }
      } else if (model) {
        if (mayHaveApplied && shadowInflight?.op === 'del') {
          shadowModel.delete(id);
          result.unackedApplied++;
        } else {
          lost(`${id}: acknowledged, but missing from token.shadow`);
        }
      } else if (mayHaveApplied && shadowInflight?.op === 'set') {
        shadowModel.set(id, { secret: null, verified: null });
        result.unackedApplied++;
      } else {
        lost(`${id}: in token.shadow, but deleted (or never created) by an acknowledged change`);
      }
    }

    const cfgText = existsSync(files.cfg) ? readFileSync(files.cfg, 'utf8') : '';
    const parsed = parseUserConfig(cfgText);
    for (const w of parsed.warnings) problem(`user.cfg: ${w.message}`);
    const user = parsed.config.users.get(USER);
    const cfgInflight = inflight?.f === 'cfg' ? inflight : null;
    if (!user) {
      if (cfgModel.user) lost(`${USER}: acknowledged, but missing from user.cfg`);
      return;
    }
    if (!cfgModel.user) {
      if (cfgInflight === null)
        lost(`${USER} in user.cfg, but no change that made it was acknowledged`);
      cfgModel.user = true;
    }
    if (user.comment !== cfgModel.comment) {
      if (cfgInflight?.op === 'user' && user.comment === cfgInflight.comment) {
        cfgModel.comment = user.comment;
        result.unackedApplied++;
      } else {
        lost(
          `${USER}: comment ${JSON.stringify(user.comment)}, acknowledged ${JSON.stringify(cfgModel.comment)}`,
        );
      }
    }
    for (const name of new Set([...cfgModel.tokens.keys(), ...user.tokens.keys()])) {
      const want = cfgModel.tokens.get(name);
      const have = user.tokens.get(name)?.comment;
      if (want === have) continue;
      const mayHaveApplied = cfgInflight?.name === name;
      if (mayHaveApplied && cfgInflight?.op === 'put' && have === cfgInflight.comment) {
        cfgModel.tokens.set(name, have as string);
        result.unackedApplied++;
      } else if (mayHaveApplied && cfgInflight?.op === 'rm' && have === undefined) {
        cfgModel.tokens.delete(name);
        result.unackedApplied++;
      } else {
        lost(
          `${USER}!${name}: comment ${JSON.stringify(have)}, acknowledged ${JSON.stringify(want)}`,
        );
      }
    }
  };

  let previousHeldLock = false;
  for (let cycle = 0; cycle <= kills; cycle++) {
    const finish = cycle === kills;
    // Kill after the k-th acknowledgment plus a random delay: randomness, not ordering.
    const k = randomInt(random, 0, 5);
    const useImmediates = random() < 0.25;
    const delayMs = random() * 12;
    const turns = randomInt(random, 0, 40);
    const state = {
      inflight: null as Message | null,
      acks: 0,
      armed: false,
      failure: null as string | null,
      done: false,
      firstAck: null as number | null,
      readyAt: 0,
    };
    const child = spawnLines(
      writer,
      [dir, String(seed + cycle), `l${lane}c${cycle}`, finish ? 'finish' : 'loop'],
      (line) => {
        let m: Message;
        try {
          m = JSON.parse(line) as Message;
        } catch {
          state.failure = `writer printed ${JSON.stringify(line)}`;
          child.process.kill('SIGKILL');
          return;
        }
        if (m.t === 'ready') state.readyAt = performance.now();
        else if (m.t === 'intent') state.inflight = m;
        else if (m.t === 'ack') {
          state.firstAck ??= performance.now() - state.readyAt;
          applyAck(m);
          state.inflight = null;
          state.acks++;
        } else if (m.t === 'error' || m.t === 'warning') {
          state.failure = `writer ${m.t}: ${m.name ?? ''} ${m.code ?? ''} ${m.message}`;
          child.process.kill('SIGKILL');
        } else if (m.t === 'done') state.done = true;
        const due = m.t === 'ready' ? k === 0 : m.t === 'ack' && state.acks >= k;
        if (!finish && !state.armed && due) {
          state.armed = true;
          if (useImmediates) {
            let left = turns;
            const spin = () => (left-- > 0 ? setImmediate(spin) : child.process.kill('SIGKILL'));
            spin();
          } else {
            setTimeout(() => child.process.kill('SIGKILL'), delayMs);
          }
        }
      },
    );
    // A watchdog, not a synchronisation: a writer that makes no progress would hang the lane.
    const watchdog = setTimeout(() => {
      state.failure = 'writer made no progress for 60 s';
      child.process.kill('SIGKILL');
    }, 60_000);
    const exit = await child.closed;
    clearTimeout(watchdog);
    if (state.failure !== null) {
      problem(`cycle ${cycle}: ${state.failure}; stderr: ${child.stderr()}`);
      break;
    }
    if (state.firstAck !== null) {
      (previousHeldLock ? result.recoveryLocked : result.recoveryFree).push(state.firstAck);
    }
    if (finish ? exit.code !== 0 || !state.done : exit.signal !== 'SIGKILL') {
      problem(`cycle ${cycle}: writer exited ${exit.code ?? exit.signal}: ${child.stderr()}`);
      break;
    }
    if (!finish) result.kills++;
    const held = existsSync(`${files.shadow}.lock`) || existsSync(`${files.cfg}.lock`);
    if (held && !finish) result.killsHoldingLock++;
    if (held && finish) problem('a cleanly finished writer left a lock behind');
    previousHeldLock = held;
    let newTemps = 0;
    for (const name of readdirSync(dir).filter((n) => n.includes('.tmp-'))) {
      const pending = pendingTemps[name.startsWith('token.shadow.') ? 'shadow' : 'cfg'];
      if (!pending.has(name)) newTemps++;
      pending.add(name);
    }
    if (newTemps > 0) result.killsLeavingTemps++;
    await check(finish ? null : state.inflight);
    if (result.lost.length > 0 || result.problems.length > 0) break;
  }
  // The finishing writer changed both files: every temp ever left must have been removed.
  for (const [file, names] of Object.entries(pendingTemps)) {
    result.tempsLeft += names.size;
    if (names.size > 0) problem(`${file}: temps never cleaned: ${[...names].join(', ')}`);
  }
  return result;
}

describe('reliability: crash loops', () => {
  const pool = new HashPool({ threads: 1, maxQueue: 1000 });
  after(() => pool.close());

  it(`a writer killed with SIGKILL ${KILLS} times loses no acknowledged change`, async () => {
    const seed = Number(process.env.RELIABILITY_SEED ?? newSeed());
    const started = performance.now();
    const perLane = Array.from(
      { length: LANES },
      (_, i) => Math.floor(KILLS / LANES) + (i < KILLS % LANES ? 1 : 0),
    );
    const results = await Promise.all(
      perLane.map((kills, lane) => runLane(tempDir(), kills, seed + lane * 100_003, pool, lane)),
    );
    const elapsed = performance.now() - started;
    const sum = (f: (r: LaneResult) => number) => results.reduce((s, r) => s + f(r), 0);
    const lost = results.flatMap((r) => r.lost);
    const problems = results.flatMap((r) => r.problems);
    const locked = results.flatMap((r) => r.recoveryLocked);
    const free = results.flatMap((r) => r.recoveryFree);
    const kills = sum((r) => r.kills);
    report(`crash loop (${LONG ? 'long' : 'quick'}, seed ${seed}, ${LANES} lanes)`, [
      `${kills} kills, ${lost.length} acknowledged changes lost`,
      `${sum((r) => r.acks)} acknowledged changes checked after every kill; ` +
        `${sum((r) => r.verifies)} secret verifies`,
      `${sum((r) => r.unackedApplied)} unacknowledged in-flight changes found applied (allowed)`,
      `${sum((r) => r.killsHoldingLock)} kills left a lock behind; the next writer's first change ` +
        `came after median ${seconds(median(locked))}, max ${seconds(Math.max(0, ...locked))} ` +
        `(otherwise median ${seconds(median(free))})`,
      `${sum((r) => r.killsLeavingTemps)} kills left temp files: ${sum((r) => r.tempsRemoved)} ` +
        `checked gone after the next mutation of their file, ${sum((r) => r.tempsLeft)} left at the end`,
      `${problems.length} other problems (unparseable file, user.cfg warning, surviving temp, ` +
        'writer error, lock left by a clean exit)',
      `time: ${seconds(elapsed)}`,
    ]);
    assert.deepEqual(lost, []);
    assert.deepEqual(problems, []);
    assert.equal(kills, KILLS);
    // The wait for an abandoned lock is bounded by the library itself: a writer that could not
    // take it within 3 x staleMs fails with LockError, which counts as a problem above.
  });
});
