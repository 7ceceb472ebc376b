import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { effectiveExpiry, expiringWithin } from '../src/config/expiring.js';
import { createUserConfig } from '../src/config/types.js';
import { addToken, addUser } from '../src/config/users.js';
import { LastUsedFileError, ParameterError } from '../src/errors.js';
import { formatAge, parseDuration } from '../src/service/durations.js';
import { BoundaryTask, untilNextBoundary } from '../src/usage/boundary-task.js';
import {
  LastUsedFileSink,
  LastUsedReader,
  parseLastUsed,
  readLastUsed,
  serializeLastUsed,
} from '../src/usage/file.js';
import { LastUsedLedger } from '../src/usage/ledger.js';
import { lastUseOf as at, type LastUse, UsageNotes } from '../src/usage/notes.js';
import { MAX_REPORT_ENTRIES, type ReportedUse, UsageReporter } from '../src/usage/reporter.js';
import type { LastUsedBatch, LastUsedSink } from '../src/usage/sink.js';
import { tempDir } from './helpers/tmp.js';

/** Token id -> second, for the assertions about times alone. */
function times(uses: Iterable<readonly [string, LastUse]>): Record<string, number> {
  return Object.fromEntries([...uses].map(([tokenid, use]) => [tokenid, use.seconds]));
}

/** A map of uses at the given seconds, without a source. */
function usesAt(entries: Array<[string, number]>): Map<string, LastUse> {
  return new Map(entries.map(([tokenid, seconds]) => [tokenid, at(seconds)]));
}

/** A clock the test moves by hand. */
function manualClock(seconds = 1_000) {
  return { seconds };
}

describe('UsageNotes', () => {
  it('keeps the latest second per token and hands each use over once', () => {
    const clock = manualClock();
    const notes = new UsageNotes(clock);
    notes.note('a@pve!x');
    notes.note('a@pve!x');
    clock.seconds = 1_001;
    notes.note('b@pve!y');
    assert.equal(notes.total, 3);
    assert.deepEqual(
      [...notes.take()],
      [
        ['a@pve!x', at(1_000)],
        ['b@pve!y', at(1_001)],
      ],
    );
    // Nothing new: an entry older than the last take is dropped, one of the same second resent.
    clock.seconds = 1_005;
    assert.deepEqual([...notes.take()], [['b@pve!y', at(1_001)]]);
    assert.deepEqual([...notes.take()], []);
    assert.equal(notes.size, 0);
    notes.note('a@pve!x');
    assert.deepEqual([...notes.take()], [['a@pve!x', at(1_005)]]);
    assert.deepEqual(notes.lastUse('a@pve!x'), at(1_005));
  });

  it("keeps the latest use's source with its second, an unknown source included", () => {
    const clock = manualClock();
    const notes = new UsageNotes(clock);
    notes.note('a@pve!x', '127.0.0.2');
    notes.note('b@pve!y');
    assert.deepEqual(notes.lastUse('a@pve!x'), at(1_000, '127.0.0.2'));
    // The same second, another source: the later one.
    notes.note('a@pve!x', '2001:db8::1');
    assert.deepEqual(notes.lastUse('a@pve!x'), at(1_000, '2001:db8::1'));
    clock.seconds = 1_001;
    notes.note('b@pve!y', '10.0.0.1');
    assert.deepEqual(
      [...notes.take()],
      [
        ['a@pve!x', at(1_000, '2001:db8::1')],
        ['b@pve!y', at(1_001, '10.0.0.1')],
      ],
    );
    // A use whose source is not known is the latest use all the same: no stale address.
    notes.note('b@pve!y');
    assert.deepEqual(notes.lastUse('b@pve!y'), at(1_001));
    // A taken batch is a copy: later notes do not change it.
    notes.note('a@pve!x', '10.0.0.9');
    const batch = notes.take();
    notes.note('a@pve!x', '10.0.0.10');
    assert.deepEqual(batch.get('a@pve!x'), at(1_001, '10.0.0.9'));
  });

  it('keeps one note object per token: a use from the same address writes nothing', () => {
    const clock = manualClock();
    const notes = new UsageNotes(clock);
    // Equal content, distinct strings (a new connection each): compared by value.
    const first = ['127.0.0', '2'].join('.');
    const again = ['127.0', '0.2'].join('.');
    notes.note('a@pve!x', first);
    const stored = notes.lastUse('a@pve!x')?.source;
    notes.note('a@pve!x', again);
    assert.equal(notes.lastUse('a@pve!x')?.source, stored);
    assert.equal(notes.total, 2);
    assert.equal(notes.size, 1);
  });

  it('does not keep the header a token id was sliced from', () => {
    const notes = new UsageNotes(manualClock());
    const header = `PVEAPIToken=a@pve!x=${'s'.repeat(36)}`;
    notes.note(header.slice(12, 19));
    const [key] = [...notes.take().keys()];
    assert.equal(key, 'a@pve!x');
  });

  it('does not keep the header a source was sliced from', () => {
    const notes = new UsageNotes(manualClock());
    const header = `X-Forwarded-For: 192.0.2.10, secret=${'s'.repeat(64)}`;
    notes.note('a@pve!x', header.slice(17, 27));
    assert.equal(notes.lastUse('a@pve!x')?.source, '192.0.2.10');
  });
});

describe('UsageReporter', () => {
  it('splits a batch into messages and keeps what the manager did not take', async () => {
    const notes = new UsageNotes(manualClock());
    for (let i = 0; i < MAX_REPORT_ENTRIES + 10; i++) notes.note(`u@pve!t${i}`);
    const sent: ReportedUse[][] = [];
    let refuse = true;
    const reporter = new UsageReporter({
      notes,
      intervalMs: 3_600_000,
      async send(uses) {
        if (refuse && sent.length === 1) throw new Error('manager down');
        sent.push(uses);
      },
    });
    await reporter.flush();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.length, MAX_REPORT_ENTRIES);
    assert.equal(reporter.batches, 0);
    refuse = false;
    // The shutdown batch: everything again (uses of the second of the last take are resent,
    // the manager keeps the latest), in two messages.
    await reporter.close();
    assert.deepEqual(
      sent.slice(1).map((m) => m.length),
      [MAX_REPORT_ENTRIES, 10],
    );
    assert.equal(new Set(sent.flat().map(([id]) => id)).size, MAX_REPORT_ENTRIES + 10);
    assert.equal(reporter.batches, 1);
  });

  it('sends the source with a use, and the old two-element form without one', async () => {
    const notes = new UsageNotes(manualClock());
    notes.note('a@pve!x', '127.0.0.2');
    notes.note('b@pve!y');
    const sent: ReportedUse[][] = [];
    const reporter = new UsageReporter({
      notes,
      intervalMs: 3_600_000,
      async send(uses) {
        sent.push(uses);
      },
    });
    await reporter.close();
    assert.deepEqual(sent, [
      [
        ['a@pve!x', 1_000, '127.0.0.2'],
        ['b@pve!y', 1_000],
      ],
    ]);
  });

  it('does not wait for a manager that never answers when it stops', async () => {
    const notes = new UsageNotes(manualClock());
    notes.note('a@pve!x');
    let asked = 0;
    const reporter = new UsageReporter({
      notes,
      intervalMs: 3_600_000,
      send: () => {
        asked++;
        return new Promise<void>(() => undefined); // never settles
      },
    });
    await reporter.close(50);
    assert.equal(asked, 1);
    assert.equal(reporter.batches, 0);
  });

  it('runs on a new interval from the next boundary once retimed', async () => {
    let ran: () => void = () => undefined;
    // The task's timer is unref'd: this deadline keeps the process up, and fails a task that never runs.
    let deadline: NodeJS.Timeout | undefined;
    const runs = new Promise<void>((resolve, reject) => {
      ran = resolve;
      deadline = setTimeout(() => reject(new Error('the retimed task never ran')), 30_000);
    });
    const task = new BoundaryTask(3_600_000, 0, async () => ran());
    task.retime(50, 0);
    assert.equal(task.intervalMs, 50);
    await runs; // an hour away before the retime
    clearTimeout(deadline);
    await task.stop();
  });

  it('aims at the next multiple of the interval', () => {
    assert.equal(untilNextBoundary(10_000, 0, 123_456), 6_544);
    assert.equal(untilNextBoundary(10_000, 500, 120_000), 10_500);
  });
});

class MemorySink implements LastUsedSink {
  batches: LastUsedBatch[] = [];
  fail = false;
  async write(batch: LastUsedBatch) {
    if (this.fail) throw new Error('disk full');
    this.batches.push({ ...batch, all: new Map(batch.all) });
  }
}

describe('LastUsedLedger', () => {
  const known = async () => (id: string) => id.startsWith('a@pve!');

  it('merges reports, drops unknown tokens and bad entries, clamps the future', async () => {
    const sink = new MemorySink();
    const errors: unknown[] = [];
    const ledger = new LastUsedLedger({
      sinks: [sink],
      initial: { since: 500, tokens: usesAt([['a@pve!old', 600]]) },
      intervalMs: 3_600_000,
      known,
      now: () => 1_000,
      onError: (e) => errors.push(e),
    });
    const taken = await ledger.report([
      ['a@pve!x', 900],
      ['a@pve!x', 800], // older: ignored
      ['a@pve!y', 99_999], // far in the future: now
      ['b@pve!z', 900], // unknown token
      ['not an id', 900],
      ['a@pve!w', -1],
      'garbage',
    ]);
    assert.equal(taken, 2);
    await assert.rejects(ledger.report('nope'), ParameterError);
    await assert.rejects(
      ledger.report(Array.from({ length: MAX_REPORT_ENTRIES + 1 }, () => ['a@pve!x', 1])),
      ParameterError,
    );
    await ledger.flush();
    assert.equal(sink.batches.length, 1);
    const batch = sink.batches[0] as LastUsedBatch;
    assert.equal(batch.since, 500);
    assert.deepEqual(times(batch.all), {
      'a@pve!old': 600,
      'a@pve!x': 900,
      'a@pve!y': 1_000,
    });
    assert.deepEqual(times(batch.changed), { 'a@pve!x': 900, 'a@pve!y': 1_000 });
    // Nothing changed: no write.
    await ledger.flush();
    assert.equal(sink.batches.length, 1);
    // A failed write keeps the changes for the next one.
    sink.fail = true;
    await ledger.report([['a@pve!x', 950]]);
    await ledger.flush();
    assert.equal(errors.length, 1);
    sink.fail = false;
    ledger.forget('a@pve!old');
    await ledger.close();
    assert.equal(sink.batches.length, 2);
    assert.deepEqual(times(sink.batches[1]?.changed ?? []), { 'a@pve!x': 950 });
    assert.equal(sink.batches[1]?.all.has('a@pve!old'), false);
  });

  it("keeps a report's source, tags it with this host, and drops a source that is no address", async () => {
    const sink = new MemorySink();
    const ledger = new LastUsedLedger({
      sinks: [sink],
      host: 'host-a',
      intervalMs: 3_600_000,
      known,
      now: () => 1_000,
    });
    const taken = await ledger.report([
      ['a@pve!v4', 900, '127.0.0.2'],
      ['a@pve!v6', 900, '2001:db8::7'],
      ['a@pve!none', 900],
      ['a@pve!mapped', 900, '::ffff:127.0.0.2'], // a dual-stack socket's view of an IPv4 client
      ['a@pve!junk', 900, 'PVEAPIToken=a@pve!x=secret'], // never stored: time only
      ['a@pve!num', 900, 42],
      ['a@pve!long', 900, '1.2.3.4', 'extra'], // not a use
    ]);
    assert.equal(taken, 6);
    assert.deepEqual(ledger.lastUse('a@pve!v4'), at(900, '127.0.0.2', 'host-a'));
    assert.deepEqual(ledger.lastUse('a@pve!mapped'), at(900, '127.0.0.2', 'host-a'));
    assert.deepEqual(ledger.lastUse('a@pve!v6'), at(900, '2001:db8::7', 'host-a'));
    assert.deepEqual(ledger.lastUse('a@pve!none'), at(900, undefined, 'host-a'));
    assert.deepEqual(ledger.lastUse('a@pve!junk'), at(900, undefined, 'host-a'));
    assert.deepEqual(ledger.lastUse('a@pve!num'), at(900, undefined, 'host-a'));
    assert.equal(ledger.lastUse('a@pve!long'), undefined);
    // A later use from elsewhere wins with its own source and host; an older one changes nothing.
    await ledger.absorb([
      ['a@pve!v4', at(950, '10.1.1.1', 'host-b')],
      ['a@pve!v6', at(800, '10.1.1.2', 'host-b')],
    ]);
    assert.deepEqual(ledger.lastUse('a@pve!v4'), at(950, '10.1.1.1', 'host-b'));
    assert.deepEqual(ledger.lastUse('a@pve!v6'), at(900, '2001:db8::7', 'host-a'));
    await ledger.close();
    assert.deepEqual(sink.batches[0]?.changed.get('a@pve!v4'), at(900, '127.0.0.2', 'host-a'));
  });
});

describe('LastUsedLedger with uses from elsewhere', () => {
  const known = async () => (id: string) => id.startsWith('a@pve!');
  /** A ledger over `sinks` that writes only when flushed, since 500, with a@pve!x used at 900. */
  const ledgerOf = (sinks: LastUsedSink[], onError?: (error: unknown) => void) =>
    new LastUsedLedger({
      sinks,
      initial: { since: 500, tokens: usesAt([['a@pve!x', 900]]) },
      intervalMs: 3_600_000,
      known,
      now: () => 1_000,
      ...(onError ? { onError } : {}),
    });

  it('absorbs only newer uses of known tokens, outside the changes, and gathers at every batch', async () => {
    const sink = new MemorySink();
    let elsewhere: Array<[string, LastUse]> = [];
    let gathered = 0;
    const remote: LastUsedSink = {
      write: async () => undefined,
      gather: async () => {
        gathered++;
        return elsewhere;
      },
    };
    const ledger = ledgerOf([sink, remote]);
    // Older, unknown, malformed, far ahead: only the newer one and the clamped one count.
    const taken = await ledger.absorb([
      ['a@pve!x', at(800)],
      ['b@pve!z', at(950)],
      ['a@pve!x', at(950)],
      ['a@pve!y', at(99_999)],
    ]);
    assert.equal(taken, 2);
    assert.deepEqual(ledger.lastUse('a@pve!y'), at(1_000));
    await ledger.flush();
    assert.equal(sink.batches.length, 1);
    assert.deepEqual(times(sink.batches[0]?.changed ?? []), {});
    assert.equal(sink.batches[0]?.all.get('a@pve!x')?.seconds, 950);
    // Nothing newer gathered, nothing reported: the batch reads but writes nothing.
    elsewhere = [['a@pve!x', at(900)]];
    await ledger.flush();
    assert.equal(gathered, 2);
    assert.equal(sink.batches.length, 1);
    // A newer use elsewhere is written at the next batch, and stays out of `changed`.
    elsewhere = [['a@pve!x', at(990)]];
    await ledger.report([['a@pve!w', 980]]);
    await ledger.flush();
    assert.equal(sink.batches.length, 2);
    assert.equal(sink.batches[1]?.all.get('a@pve!x')?.seconds, 990);
    assert.deepEqual(times(sink.batches[1]?.changed ?? []), { 'a@pve!w': 980 });
    await ledger.close();
  });

  it('a sink with something of its own pending is written alone when nothing else changed', async () => {
    const file = new MemorySink();
    const own = new MemorySink() as MemorySink & { pending: boolean };
    own.pending = false;
    const ledger = ledgerOf([file, own]);
    await ledger.flush();
    assert.equal(file.batches.length + own.batches.length, 0);
    own.pending = true;
    await ledger.flush();
    assert.equal(own.batches.length, 1);
    assert.equal(file.batches.length, 0, 'the file had nothing new');
    own.pending = false;
    await ledger.close();
  });

  it('a failed gather is reported and the batch still writes what the workers reported', async () => {
    const sink = new MemorySink();
    const errors: unknown[] = [];
    const failing: LastUsedSink = {
      write: async () => undefined,
      gather: async () => {
        throw new Error('etcd unavailable');
      },
    };
    const ledger = ledgerOf([sink, failing], (e) => errors.push(e));
    await ledger.report([['a@pve!x', 990]]);
    await ledger.close();
    assert.match(String(errors[0]), /etcd unavailable/);
    assert.equal(sink.batches[0]?.all.get('a@pve!x')?.seconds, 990);
  });
});

describe('last-used.json', () => {
  it('round-trips, is written 0600 (0640 with a group) and re-read only when replaced', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'last-used.json');
    assert.deepEqual(await readLastUsed(file), { since: null, tokens: new Map() });
    const sink = new LastUsedFileSink(file);
    const all = usesAt([
      ['b@pve!x', 20],
      ['__proto__', 5],
    ]);
    await sink.write({ since: 10, all, changed: all });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const reader = new LastUsedReader(file);
    const first = await reader.read();
    assert.deepEqual(
      [...first.tokens],
      [
        ['__proto__', at(5)],
        ['b@pve!x', at(20)],
      ],
    );
    assert.equal(first.since, 10);
    assert.equal(await reader.read(), first); // same stamp: the parsed record again
    await sink.write({ since: 10, all: usesAt([['b@pve!x', 30]]), changed: new Map() });
    assert.deepEqual((await reader.read()).tokens.get('b@pve!x'), at(30));
    assert.equal(readFileSync(file, 'utf8'), serializeLastUsed(10, usesAt([['b@pve!x', 30]])));
    const shared = path.join(dir, 'shared.json');
    await new LastUsedFileSink(shared, { gid: 65534 }).write({ since: 1, all, changed: all });
    assert.equal(statSync(shared).mode & 0o777, 0o640);
    assert.equal(statSync(shared).gid, 65534);
  });

  it("keeps each use's source and host, and the writing host, next to the times", async () => {
    const dir = tempDir();
    const file = path.join(dir, 'last-used.json');
    const all = new Map([
      ['a@pve!x', at(20, '127.0.0.2', 'host-a')],
      ['a@pve!y', at(21, '2001:db8::1')],
      ['a@pve!z', at(22)],
    ]);
    await new LastUsedFileSink(file, { host: 'host-a' }).write({ since: 10, all, changed: all });
    const text = readFileSync(file, 'utf8');
    const record = await readLastUsed(file);
    assert.equal(record.host, 'host-a');
    assert.deepEqual([...record.tokens], [...all]);
    // The times stay where an older reader looks for them.
    const raw = JSON.parse(text) as { tokens: Record<string, number>; where: object };
    assert.deepEqual(raw.tokens, { 'a@pve!x': 20, 'a@pve!y': 21, 'a@pve!z': 22 });
    assert.deepEqual(raw.where, {
      'a@pve!x': { source: '127.0.0.2', host: 'host-a' },
      'a@pve!y': { source: '2001:db8::1' },
    });
  });

  it('reads a file written before sources were kept', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'last-used.json');
    // As the previous release wrote it: times only.
    writeFileSync(file, '{\n "format": 1,\n "since": 10,\n "tokens": {\n  "a@pve!x": 20\n }\n}\n');
    const record = await new LastUsedReader(file).read();
    assert.equal(record.since, 10);
    assert.equal(record.host, undefined);
    assert.deepEqual([...record.tokens], [['a@pve!x', at(20)]]);
  });

  it('refuses a file it does not understand, with a typed error', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'last-used.json');
    for (const text of [
      '{',
      '[]',
      '{"format":2,"since":1,"tokens":{}}',
      '{"format":1,"since":1,"tokens":{"a@pve!x":"1"}}',
      '{"format":1,"since":1,"tokens":{"a@pve!x":1},"where":[]}',
      '{"format":1,"since":1,"tokens":{"a@pve!x":1},"where":{"a@pve!x":{"source":"secret"}}}',
      '{"format":1,"since":1,"tokens":{"a@pve!x":1},"where":{"a@pve!x":{"host":"a b"}}}',
      '{"format":1,"since":1,"host":7,"tokens":{}}',
    ]) {
      assert.throws(() => parseLastUsed(file, text), LastUsedFileError);
    }
    writeFileSync(file, '{"format":1,"since":"x","tokens":{}}');
    await assert.rejects(new LastUsedReader(file).read(), LastUsedFileError);
  });
});

describe('expiry ahead', () => {
  it('lists enabled users and tokens expiring within the window, by the earlier expiry', () => {
    const config = createUserConfig();
    const now = 1_000_000;
    addUser(config, 'soon@pve', { expire: now + 100 });
    addToken(config, 'soon@pve!t', { expire: now + 5_000 }); // stops with its user
    addUser(config, 'ok@pve');
    addToken(config, 'ok@pve!later', { expire: now + 50 });
    addToken(config, 'ok@pve!far', { expire: now + 1_000_000 });
    addToken(config, 'ok@pve!gone', { expire: now - 1 });
    addToken(config, 'ok@pve!off', { expire: now + 10, enable: false });
    assert.deepEqual(expiringWithin(config, now, 1_000), [
      { kind: 'token', id: 'ok@pve!later', expire: now + 50 },
      { kind: 'user', id: 'soon@pve', expire: now + 100 },
      { kind: 'token', id: 'soon@pve!t', expire: now + 100 },
    ]);
    assert.equal(effectiveExpiry(0, 0), 0);
    assert.equal(effectiveExpiry(0, 7), 7);
    assert.equal(effectiveExpiry(9, 0), 9);
  });
});

describe('durations', () => {
  it('parses what people type and refuses bare numbers and nonsense', () => {
    assert.equal(parseDuration('90d'), 90 * 86_400_000);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('500ms'), 500);
    for (const bad of ['90', '', 'soon', '-1d', '0s'])
      assert.throws(() => parseDuration(bad), RangeError);
  });

  it('formats ages for people', () => {
    assert.equal(formatAge(undefined, 100), 'never');
    assert.equal(formatAge(100, 100), 'just now');
    assert.equal(formatAge(58, 100), '42s ago');
    assert.equal(formatAge(0, 3 * 86_400), '3d ago');
  });
});
