/**
 * Webhooks against real HTTP receivers and a real manager: token changes made
 * with tokenctl and over the manager's socket arrive signed (HMAC-SHA256 over
 * the timestamp and body), in order, with no secret; a receiver answering 500
 * gets them on a retry; one that is down gets them once it is up, across a
 * manager restart (the queue is on disk); a token expiring within a lead time
 * is announced once.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Deployment, startDeployment, stopChild } from '../harness/daemons.js';
import { freePorts } from '../harness/ports.js';
import { tokenctlIn } from '../harness/tokenctl.js';
import type { TokenEvent } from '../src/events/webhooks.js';
import { tempDir } from './helpers/tmp.js';
import { type Receiver, receiver, SECRET } from './helpers/webhook-receiver.js';

/** The events' ids without the host part, to compare receivers. */
const kinds = (events: TokenEvent[]) =>
  events.map((e) => `${e.type} ${e.data.tokenid ?? e.data.userid}`);

describe('webhooks', () => {
  let deployment: Deployment;
  let up: Receiver;
  let flaky: Receiver;
  let late: Receiver | null = null;
  let latePort: number;
  const secrets: string[] = [];
  // Before the directory's own clean-up (hooks run in the order they are added): the manager
  // must be stopped before its files are removed.
  after(async () => {
    await deployment?.stop();
    await up?.close();
    await flaky?.close();
    await late?.close();
  });
  const dir = tempDir();

  before(async () => {
    const [upPort, flakyPort, downPort] = await freePorts(3);
    latePort = downPort as number;
    up = await receiver(upPort as number);
    flaky = await receiver(flakyPort as number, 2);
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    writeFileSync(
      path.join(dir, 'etc', 'webhooks.json'),
      JSON.stringify({
        endpoints: [
          { url: up.url, secret: SECRET },
          { url: flaky.url, secret: SECRET, events: ['token.created', 'token.revoked'] },
          { url: `http://127.0.0.1:${latePort}/hook`, secret: SECRET },
        ],
        expiryLeadDays: [30, 7],
        retryMaxMs: 400,
      }),
      { mode: 0o600 },
    );
    // Before the manager ever ran: not announced as a change, but its expiry is.
    const soon = new Date(Date.now() + 10 * 86400_000).toISOString().slice(0, 10);
    assert.equal((await tokenctlIn(dir, 'user', 'add', 'old@pve')).code, 0);
    assert.equal((await tokenctlIn(dir, 'token', 'add', 'old@pve!soon', '--expire', soon)).code, 0);
    deployment = await startDeployment(dir);
  });

  it('announces an expiring token once, at its first lead time', async () => {
    const [first] = await up.received(1);
    assert.equal(first?.type, 'token.expiring');
    assert.equal(first?.data.tokenid, 'old@pve!soon');
    assert.equal(first?.data['lead-days'], 30);
  });

  it("sends tokenctl's and the socket's changes, signed, in order, without secrets", async () => {
    const json = async (...args: string[]) => {
      const run = await tokenctlIn(dir, '--output', 'json', ...args);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout) as { value?: string };
    };
    await json('user', 'add', 'joe@pve');
    secrets.push((await json('token', 'add', 'joe@pve!ci')).value as string);
    secrets.push((await json('token', 'rotate', 'joe@pve!ci')).value as string);
    await json('token', 'update', 'joe@pve!ci', '--enable', '0');
    const made = await deployment.asRoot('token.create', {
      userid: 'joe@pve',
      tokenName: 'api',
      fields: {},
    });
    secrets.push((made as unknown as { data: { value: string } }).data.value);
    await json('token', 'remove', 'joe@pve!ci');

    const events = (await up.received(6)).slice(1);
    assert.deepEqual(
      kinds(events).filter((k) => !k.includes('root@pam')),
      [
        'token.created joe@pve!ci',
        'token.rotated joe@pve!ci',
        'token.revoked joe@pve!ci',
        'token.created joe@pve!api',
        'token.revoked joe@pve!ci',
      ],
    );
    assert.equal(events[2]?.data.how, 'disabled');
    assert.equal(events[0]?.data.actor, 'host root');
    assert.match(String(events[0]?.data.source), /^tokenctl uid=/);
    for (const body of up.bodies) {
      for (const secret of secrets) assert.ok(!body.includes(secret), 'no secret in an event');
    }
    const ids = up.events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'each event once');
  });

  it('retries a receiver that answered 500, and filters by event type', async () => {
    const events = await flaky.received(3);
    assert.deepEqual(
      kinds(events).filter((k) => !k.includes('root@pam')),
      ['token.created joe@pve!ci', 'token.revoked joe@pve!ci', 'token.created joe@pve!api'],
    );
  });

  it('delivers to a receiver that was down, after a manager restart', async () => {
    await stopChild(deployment.manager);
    deployment = await startDeployment(dir);
    late = await receiver(latePort);
    const events = await late.received(up.events.length);
    assert.deepEqual(kinds(events), kinds(up.events));
    assert.deepEqual(
      events.map((e) => e.id),
      up.events.map((e) => e.id),
      'the same events, the same ids, from the queue on disk',
    );
  });
});
