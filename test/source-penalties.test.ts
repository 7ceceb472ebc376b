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

describe('SourcePenalties.guard on a real HTTP server', () => {
  let server: http.Server;
  let port: number;
  let penalties: SourcePenalties;
  let parsed = 0;

  before(async () => {
    penalties = new SourcePenalties({ budget: 1, holdMs: 0 });
    server = http.createServer((_req, res) => {
      parsed++;
      res.end('ok');
    });
    penalties.guard(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => {
    penalties.releaseHeld();
    server.close();
  });

  it('closes a penalised peer’s connection before any HTTP parsing; others are served', async () => {
    penalties.recordFailure('127.0.0.2');
    penalties.recordFailure('127.0.0.2');
    const before = parsed;
    assert.equal(await get(port, '127.0.0.2'), null);
    assert.equal(parsed, before, 'the request never reached the server');
    assert.equal(penalties.stats().refusedConnections, 1);
    assert.equal((await get(port, '127.0.0.1'))?.status, 200);
    assert.equal((await get(port, '127.0.0.3'))?.status, 200);
  });

  it('holds a penalised connection unread, then closes it', async () => {
    const holding = new SourcePenalties({ budget: 1, holdMs: 300 });
    const held = http.createServer((_req, res) => res.end('ok'));
    holding.guard(held);
    held.listen(0, '127.0.0.1');
    await once(held, 'listening');
    try {
      holding.recordFailure('127.0.0.4');
      holding.recordFailure('127.0.0.4');
      const socket = net.connect({
        port: (held.address() as net.AddressInfo).port,
        host: '127.0.0.1',
        localAddress: '127.0.0.4',
      });
      socket.on('error', () => undefined); // the server's reset, when it lets go
      const closed = new Promise((resolve) => socket.once('close', resolve));
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      let received = 0;
      socket.on('data', (d: Buffer) => {
        received += d.length;
      });
      // Wait until the server has it in hand, then until it lets go.
      while (holding.stats().heldConnections === 0) await new Promise(setImmediate);
      await closed;
      assert.equal(received, 0, 'not a byte of answer');
      // The server's side closes too, and the held set forgets it.
      while (holding.stats().heldConnections !== 0) await new Promise(setImmediate);
      assert.equal(holding.stats().refusedConnections, 1);
    } finally {
      holding.releaseHeld();
      held.close();
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
    // Two workers with a budget of 3 each: at most 8 failures until both refuse.
    for (let i = 0; i < 20 && replies.at(-1) !== null; i++) {
      replies.push(await call(d, '127.0.0.7', wrong));
    }
    assert.equal(replies.at(-1), null, `the source was never refused: ${JSON.stringify(replies)}`);
    for (const reply of replies.slice(0, -1)) {
      assert.equal(reply?.status, 401);
      assert.equal(reply?.connection, 'close', 'a 401 closes the connection');
    }
    assert.ok(replies.length >= 4, 'not refused before the budget was spent');
    // The token is not locked out from elsewhere, the attacker's address is locked out for all.
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
