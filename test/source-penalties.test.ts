import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Daemons, pveHeader, startDaemons } from '../harness/daemons.js';
import { SourcePenalties } from '../src/http/source-penalties.js';
import { DEFAULT_HASH_NICE } from '../src/service/settings.js';
import { tempDir } from './helpers/tmp.js';

function clock() {
  let now = 0;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe('SourcePenalties: budgets', () => {
  it('penalises a source past its budget and forgives it as the bucket drains', () => {
    const c = clock();
    const p = new SourcePenalties({ budget: 3, decayPerSecond: 1, now: c.now });
    for (let i = 0; i < 3; i++) assert.equal(p.recordFailure('10.0.0.1'), false);
    assert.equal(p.isPenalised('10.0.0.1'), false, 'at the budget, not past it');
    assert.equal(p.recordFailure('10.0.0.1'), true);
    assert.equal(p.isPenalised('10.0.0.1'), true);
    assert.equal(p.isPenalised('10.0.0.2'), false, 'another source is not touched');
    c.advance(999);
    assert.equal(p.isPenalised('10.0.0.1'), true);
    c.advance(2);
    assert.equal(p.isPenalised('10.0.0.1'), false, 'one failure forgiven per second');
  });

  it('caps the level at twice the budget, so a source that stops recovers in bounded time', () => {
    const c = clock();
    const p = new SourcePenalties({ budget: 5, decayPerSecond: 1, now: c.now });
    for (let i = 0; i < 1000; i++) p.recordFailure('10.0.0.1');
    c.advance(4_900);
    assert.equal(p.isPenalised('10.0.0.1'), true);
    c.advance(200);
    assert.equal(p.isPenalised('10.0.0.1'), false, '10 - 5.1 s of decay is below 5');
  });

  it('tracks at most maxSources, forgetting the least recently failing first', () => {
    const p = new SourcePenalties({ budget: 1, maxSources: 3, now: () => 0 });
    for (const s of ['a', 'b', 'c']) {
      p.recordFailure(s);
      p.recordFailure(s);
    }
    p.recordFailure('a'); // a is now the most recent
    p.recordFailure('d');
    p.recordFailure('d');
    const stats = p.stats();
    assert.equal(stats.trackedSources, 3);
    assert.equal(stats.forgottenSources, 1);
    assert.equal(p.isPenalised('b'), false, 'b was the least recently failing');
    assert.equal(p.isPenalised('a'), true);
    assert.equal(p.isPenalised('d'), true);
    assert.equal(stats.penalisedSources, 3);
  });
});

describe('SourcePenalties: budgets shared with the rest of the host', () => {
  it('tells onFailure of its own failures, and raises a level without counting a failure', () => {
    const c = clock();
    const p = new SourcePenalties({ budget: 3, decayPerSecond: 1, now: c.now });
    const told: string[] = [];
    p.onFailure = (source) => told.push(source);
    p.recordFailure('10.0.0.1');
    p.raise('10.0.0.2', 5);
    assert.deepEqual(told, ['10.0.0.1'], 'a raised level is not a failure of this process');
    assert.equal(p.isPenalised('10.0.0.2'), true);
    assert.equal(p.stats().failures, 1);
    p.raise('10.0.0.2', 1); // lower than it is: unchanged
    assert.equal(p.levelOf('10.0.0.2'), 5);
    p.raise('10.0.0.3', 100); // capped at twice the budget
    assert.equal(p.levelOf('10.0.0.3'), 6);
    assert.deepEqual(p.penalised(), [
      ['10.0.0.2', 5],
      ['10.0.0.3', 6],
    ]);
    c.advance(2_500);
    assert.deepEqual(p.penalised(), [['10.0.0.3', 3.5]]);
  });
});

describe('SourcePenalties: the source of a request', () => {
  const p = new SourcePenalties({ trustedProxies: ['10.1.0.0/16', '192.0.2.7', '2001:db8::/32'] });

  it('is the peer unless the peer is a trusted proxy', () => {
    assert.equal(p.sourceOf('198.51.100.1', '203.0.113.9'), '198.51.100.1');
    assert.equal(p.sourceOf('::ffff:198.51.100.1'), '198.51.100.1');
    assert.equal(p.sourceOf('192.0.2.7', '203.0.113.9'), '203.0.113.9');
    assert.equal(p.sourceOf('10.1.2.3', '203.0.113.9'), '203.0.113.9');
    assert.equal(p.sourceOf('2001:db8::5', '203.0.113.9'), '203.0.113.9');
    assert.equal(p.sourceOf('192.0.2.7'), '192.0.2.7', 'no header: the proxy itself');
  });

  it('is the last hop no trusted proxy appended, never what the client wrote before it', () => {
    // The client claims to be 10.1.9.9 (a trusted proxy) and 1.1.1.1: only 203.0.113.9 was seen.
    assert.equal(p.sourceOf('192.0.2.7', '1.1.1.1, 203.0.113.9, 10.1.0.4'), '203.0.113.9');
    assert.equal(p.sourceOf('192.0.2.7', ['1.1.1.1', '203.0.113.9']), '203.0.113.9');
    assert.equal(p.sourceOf('192.0.2.7', '10.1.9.9, 203.0.113.9'), '203.0.113.9');
    assert.equal(p.sourceOf('192.0.2.7', 'not-an-ip, 203.0.113.9'), '203.0.113.9');
    assert.equal(p.sourceOf('192.0.2.7', '203.0.113.9, garbage'), '192.0.2.7');
  });

  it('groups IPv6 by /64 and IPv4 by /32 by default, by any prefix when told', () => {
    const d = new SourcePenalties();
    assert.equal(d.sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(d.sourceOf('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
    assert.equal(d.sourceOf('2001:db8:1:3::1'), '2001:db8:1:3::/64');
    assert.equal(d.sourceOf('fe80::1%eth0'), 'fe80::/64', 'the zone is not part of the source');
    assert.equal(d.sourceOf('::ffff:198.51.100.1'), '198.51.100.1', 'a mapped IPv4 peer is IPv4');
    assert.equal(p.sourceOf('192.0.2.7', '2001:db8:5:6::7'), '2001:db8:5:6::/64', 'behind a proxy');
    const wide = new SourcePenalties({ ipv4Prefix: 24, ipv6Prefix: 48 });
    assert.equal(wide.sourceOf('198.51.100.77'), '198.51.100.0/24');
    assert.equal(wide.sourceOf('2001:db8:1:2::1'), '2001:db8:1::/48');
    const exact = new SourcePenalties({ ipv6Prefix: 128 });
    assert.equal(exact.sourceOf('2001:db8::1'), '2001:db8::1');
    assert.equal(new SourcePenalties({ ipv4Prefix: 20 }).sourceOf('10.1.31.9'), '10.1.16.0/20');
    assert.throws(() => new SourcePenalties({ ipv4Prefix: 33 }), TypeError);
    assert.throws(() => new SourcePenalties({ ipv6Prefix: 64.5 }), TypeError);
  });

  it('refuses a proxy list it cannot read', () => {
    assert.throws(() => new SourcePenalties({ trustedProxies: ['proxy.example'] }), TypeError);
    assert.throws(() => new SourcePenalties({ trustedProxies: ['10.0.0.0/33'] }), TypeError);
  });
});

/** A request from `localAddress`; resolves with the status, or null when closed unanswered. */
function get(
  port: number,
  localAddress: string,
): Promise<{ status: number; connection: string | undefined } | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, localAddress, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }),
      );
    });
    req.on('error', () => resolve(null));
  });
}

describe('SourcePenalties.refuse on a real HTTP server', () => {
  /** A server that refuses every request through `penalties` with a 429. */
  async function refusing(penalties: SourcePenalties) {
    const server = http.createServer((req, res) =>
      penalties.refuse(req.socket, () => res.writeHead(429, { connection: 'close' }).end()),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { server, port: (server.address() as net.AddressInfo).port };
  }

  it('answers at once without a hold, and counts the refusal', async () => {
    const penalties = new SourcePenalties({ holdMs: 0 });
    const { server, port } = await refusing(penalties);
    try {
      assert.deepEqual(await get(port, '127.0.0.2'), { status: 429, connection: 'close' });
      assert.equal(penalties.stats().refusedRequests, 1);
      assert.equal(penalties.stats().refusedConnections, 1);
    } finally {
      server.close();
    }
  });

  it('holds a refused request unanswered, then answers; releaseHeld answers at once', async () => {
    const penalties = new SourcePenalties({ holdMs: 60_000 });
    const { server, port } = await refusing(penalties);
    try {
      const reply = get(port, '127.0.0.4');
      while (penalties.stats().heldConnections === 0) await new Promise(setImmediate);
      penalties.releaseHeld(); // as a draining worker does: nothing waits out its hold
      assert.equal((await reply)?.status, 429);
      assert.equal(penalties.stats().heldConnections, 0);
    } finally {
      server.close();
    }
  });

  it('forgets a held request whose client went away, and answers past maxHeld at once', async () => {
    const penalties = new SourcePenalties({ holdMs: 60_000, maxHeld: 1 });
    const { server, port } = await refusing(penalties);
    try {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      while (penalties.stats().heldConnections === 0) await new Promise(setImmediate);
      assert.equal((await get(port, '127.0.0.5'))?.status, 429, 'past maxHeld: answered at once');
      socket.destroy();
      while (penalties.stats().heldConnections !== 0) await new Promise(setImmediate);
      assert.equal(penalties.stats().refusedRequests, 2);
    } finally {
      penalties.releaseHeld();
      server.close();
    }
  });
});

/** An HTTPS request from `localAddress` on a new connection; null when closed unanswered. */
function call(
  d: Daemons,
  localAddress: string,
  auth: string,
): Promise<{ status: number; connection: string | undefined } | null> {
  return new Promise((resolve) => {
    const req = https.get(
      `${d.url}/version`,
      { ca: d.ca, agent: false, localAddress, headers: { authorization: auth } },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }),
        );
      },
    );
    req.on('error', () => resolve(null));
  });
}

describe('per-source penalties in the API daemon', () => {
  let d: Daemons;
  let valid: string;
  const dir = tempDir();

  before(async () => {
    d = await startDaemons(dir, ['--penalty-budget', '3', '--penalty-hold', '0']);
    const created = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'victim',
      fields: { privsep: false },
    });
    valid = pveHeader('root@pam!victim', (created.data as { value: string }).value);
  });
  after(() => d?.stop());

  it('refuses a failing source, never the token it attacked, nor anyone else', async () => {
    assert.equal((await call(d, '127.0.0.1', valid))?.status, 200);
    const wrong = pveHeader('root@pam!victim', '00000000-0000-4000-8000-000000000000');
    const replies: Array<{ status: number; connection: string | undefined } | null> = [];
    // A budget of 3 for the host (not per worker): refused after 4 failures, 5 if a message lags.
    for (let i = 0; i < 20 && replies.at(-1)?.status !== 429; i++) {
      replies.push(await call(d, '127.0.0.7', wrong));
    }
    assert.deepEqual(
      replies.at(-1),
      { status: 429, connection: 'close' },
      `the source was never refused: ${JSON.stringify(replies)}`,
    );
    assert.ok(replies.length <= 6, `refused only after ${replies.length - 1} failures`);
    for (const reply of replies.slice(0, -1)) {
      assert.equal(reply?.status, 401);
      assert.equal(reply?.connection, 'close', 'a 401 closes the connection');
    }
    assert.ok(replies.length >= 4, 'not refused before the budget was spent');
    // The token is not locked out from elsewhere.
    assert.equal((await call(d, '127.0.0.1', valid))?.status, 200);
    assert.equal((await call(d, '127.0.0.8', valid))?.status, 200);
  });

  it('runs hashing at a lower priority: every worker thread but the main one at nice 10', () => {
    const workers = d.apiLog.lines
      .filter((l) => l.msg === 'worker listening')
      .map((l) => Number(l.worker));
    assert.equal(workers.length, 2);
    for (const pid of workers) {
      const nice = (tid: string) =>
        Number(
          readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ')[16],
        );
      const threads = readdirSync(`/proc/${pid}/task`);
      assert.equal(nice(String(pid)), 0, 'serving keeps its priority');
      const others = threads.filter((t) => t !== String(pid)).map(nice);
      assert.ok(others.length >= 4, 'libuv pool and hashing threads exist');
      assert.ok(
        others.every((n) => n === DEFAULT_HASH_NICE),
        `background threads: ${others.join(' ')}`,
      );
    }
  });
});
