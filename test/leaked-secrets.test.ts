/**
 * Revoking a leaked secret (issue 28 item 3) against the real daemons, over
 * real HTTP: a secret reported to POST /access/leaked-secrets, without
 * authentication, gets its token revoked and refused by every worker; a
 * garbage secret, an unknown well-formed one and a matching one get the same
 * answer; bad input is a 400 and a source past its budget a 429; tokenctl
 * revokes from a file of findings; each revocation is in the audit trail with
 * its source, and a webhook receiver gets `token.leaked` (signature checked).
 * A receipt the manager had not acted on (a crash after its answer) is acted
 * on when it starts again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import {
  type Api,
  call,
  type Daemons,
  type Deployment,
  pveHeader,
  type Reply,
  startDaemons,
  startDeployment,
} from '../harness/daemons.js';
import { freePorts } from '../harness/ports.js';
import { tokenctlIn } from '../harness/tokenctl.js';
import type { AuditRecord } from '../src/audit/trail.js';
import type { TokenEvent } from '../src/events/webhooks.js';
import { newSecret } from '../src/secret-format.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';
import { type Receiver, receiver, SECRET } from './helpers/webhook-receiver.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** The first event `test` accepts, once it arrived (waits for deliveries, never a timer). */
async function arrived(hooks: Receiver, test: (event: TokenEvent) => boolean): Promise<TokenEvent> {
  for (;;) {
    const found = hooks.events.find(test);
    if (found) return found;
    await hooks.received(hooks.events.length + 1);
  }
}

/** A secret of the 53-character form made before references (valid checksum, no reference). */
function unreferenced(): string {
  let body = 'tsk_';
  for (const byte of randomBytes(43)) body += ALPHABET[byte % 62];
  let rest = crc32(body);
  let check = '';
  for (let i = 0; i < 6; i++) {
    check = ALPHABET[rest % 62] + check;
    rest = Math.floor(rest / 62);
  }
  return body + check;
}

describe('revoking a leaked secret', () => {
  let deployment: Deployment;
  let api: Api;
  let hooks: Receiver;
  const secrets = new Map<string, string>();
  const dir = tempDir();
  after(async () => {
    await deployment?.stop();
    await hooks?.close();
  });

  const tokenctl = async (...args: string[]) => {
    const run = await tokenctlIn(dir, ...args);
    assert.equal(run.code, 0, run.stderr);
    return run.stdout;
  };
  const report = (body: unknown): Promise<Reply> =>
    call(api, 'POST', '/access/leaked-secrets', { json: body });
  const status = async (tokenid: string) =>
    (
      await call(api, 'GET', '/version', {
        auth: pveHeader(tokenid, secrets.get(tokenid) as string),
      })
    ).status;
  /** The trail's records of revocations of leaked secrets. */
  const revocations = async () =>
    JSON.parse(
      await tokenctl('--output', 'json', 'audit', '--op', 'token.revoke-leaked'),
    ) as AuditRecord[];

  before(async () => {
    const [port] = await freePorts(1);
    hooks = await receiver(port as number);
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    writeFileSync(
      path.join(dir, 'etc', 'webhooks.json'),
      JSON.stringify({ endpoints: [{ url: hooks.url, secret: SECRET }], retryMaxMs: 400 }),
      { mode: 0o600 },
    );
    await tokenctl('user', 'add', 'joe@pve');
    for (const name of ['ci', 'cd', 'nightly', 'spare', 'later']) {
      const made = JSON.parse(
        await tokenctl('--output', 'json', 'token', 'add', `joe@pve!${name}`),
      ) as { value: string };
      secrets.set(`joe@pve!${name}`, made.value);
    }
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
  });

  it('revokes the token of a reported secret: refused by every worker, audited, announced', async () => {
    // Cached in both workers first (the pool spreads new connections over them).
    for (let i = 0; i < 4; i++) assert.equal(await status('joe@pve!ci'), 200);
    const answer = await report({ secrets: [secrets.get('joe@pve!ci')] });
    assert.equal(answer.status, 202, answer.raw);
    assert.equal(answer.raw, '{"data":null}');

    const leaked = await arrived(
      hooks,
      (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!ci',
    );
    assert.equal(leaked.data.actor, 'leak-report');
    assert.equal(leaked.data.source, '127.0.0.1', "the reporter's address");
    const revoked = await arrived(
      hooks,
      (e) => e.type === 'token.revoked' && e.data.tokenid === 'joe@pve!ci',
    );
    assert.equal(revoked.data.how, 'leaked');
    assert.ok(!JSON.stringify(hooks.events).includes(secrets.get('joe@pve!ci') as string));

    for (let i = 0; i < 4; i++) assert.equal(await status('joe@pve!ci'), 401, 'every worker');
    assert.equal(await status('joe@pve!cd'), 200, 'the other tokens keep working');
    const [record] = (await revocations()).filter((r) => r.target === 'joe@pve!ci');
    assert.equal(record?.actor, 'leak-report');
    assert.equal(record?.source, '127.0.0.1');
    assert.equal(record?.outcome, 'ok');
    assert.deepEqual(record?.changes, {}, 'no secret in the trail');
  });

  it('answers garbage, an unknown well-formed secret and a match alike', async () => {
    const answers = [
      await report({ secrets: ['not-a-secret-at-all'] }),
      await report({ secrets: [newSecret('nobody@pve!unknown', 'scannable')] }),
      await report({ secrets: [unreferenced()] }),
      await report({ secrets: [secrets.get('joe@pve!cd')] }),
      // A well-formed secret carrying a live token's reference, but not its secret.
      await report({ secrets: [newSecret('joe@pve!nightly', 'scannable')] }),
      // PVE's list style: several in one field.
      await call(api, 'POST', '/access/leaked-secrets', {
        form: { secrets: `${newSecret('x@pve!y', 'scannable')},${secrets.get('joe@pve!spare')}` },
      }),
    ];
    for (const answer of answers) {
      assert.equal(answer.status, 202, answer.raw);
      assert.equal(answer.raw, '{"data":null}');
    }
    await arrived(hooks, (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!cd');
    await arrived(hooks, (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!spare');
    assert.equal(await status('joe@pve!cd'), 401);
    assert.equal(await status('joe@pve!spare'), 401);
    assert.equal(await status('joe@pve!nightly'), 200, 'a made-up secret revokes nothing');
  });

  it("revokes on a rotation's previous secret during its grace, not after it", async () => {
    const rotate = async (tokenid: string, grace: string) =>
      (
        JSON.parse(
          await tokenctl('--output', 'json', 'token', 'rotate', tokenid, '--grace', grace),
        ) as { value: string }
      ).value;
    const made = async (tokenid: string) =>
      (JSON.parse(await tokenctl('--output', 'json', 'token', 'add', tokenid)) as { value: string })
        .value;
    const header = (tokenid: string, secret: string) => ({ auth: pveHeader(tokenid, secret) });
    const inGrace = await made('joe@pve!rotating');
    await rotate('joe@pve!rotating', '1h');
    const ended = await made('joe@pve!rotated');
    const current = await rotate('joe@pve!rotated', '1s');
    // The grace is over once a worker refuses the previous secret (the hash is still stored).
    while ((await call(api, 'GET', '/version', header('joe@pve!rotated', ended))).status !== 401);
    assert.equal((await report({ secrets: [ended] })).status, 202);
    assert.equal((await report({ secrets: [inGrace] })).status, 202);
    // Receipts are acted on in order: once the second is, the first was.
    await arrived(hooks, (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!rotating');
    assert.ok(
      !hooks.events.some((e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!rotated'),
      'a secret whose grace ended revokes nothing',
    );
    assert.equal(
      (await call(api, 'GET', '/version', header('joe@pve!rotated', current))).status,
      200,
    );
  });

  it('lets no caller of the socket run the revocation itself, root@pam included', async () => {
    // The op trusts that the secret was checked: only the intake and host root may run it.
    const refused = await deployment.asRoot('token.revoke-leaked', {
      userid: 'joe@pve',
      tokenName: 'nightly',
    });
    assert.equal(refused.ok, false);
    assert.equal((refused as { status: number }).status, 403);
    assert.equal(await status('joe@pve!nightly'), 200);
    const [record] = (await revocations()).filter((r) => r.target === 'joe@pve!nightly');
    assert.equal(record?.outcome, 'refused', 'the attempt is in the trail');
  });

  it('refuses malformed reports with 400 before they cost anything', async () => {
    const tooMany = Array.from({ length: 21 }, () => newSecret('a@pve!b', 'scannable'));
    for (const body of [
      {},
      { secrets: [] },
      { secrets: tooMany },
      { secrets: [{ not: 'a string' }] },
      { secrets: ['x'.repeat(257)] },
    ]) {
      const answer = await report(body);
      assert.equal(answer.status, 400, `${JSON.stringify(body).slice(0, 60)}: ${answer.raw}`);
    }
    const huge = await report({ secrets: ['y'.repeat(20_000)] });
    assert.equal(huge.status, 413, 'the body is bounded');
  });

  it('revokes with tokenctl from a file of findings, as host root, audited as tokenctl', async () => {
    const findings = path.join(dir, 'findings.json');
    writeFileSync(
      findings,
      JSON.stringify([
        { file: 'ci.yml', line: 3, match: `TOKEN=${secrets.get('joe@pve!nightly')}` },
        { file: 'old.env', match: unreferenced() },
        { file: 'noise', match: newSecret('ghost@pve!x', 'scannable') },
      ]),
    );
    assert.equal(await status('joe@pve!nightly'), 200);
    const out = await tokenctl('token', 'revoke-leaked', findings);
    assert.match(out, /3 secret\(s\) found \(1 without a reference: not traceable\)/);
    assert.match(out, /revoked 1 token\(s\): joe@pve!nightly/);
    // tokenctl returned: no worker accepts the secret any more.
    for (let i = 0; i < 4; i++) assert.equal(await status('joe@pve!nightly'), 401);
    const [record] = (await revocations()).filter(
      (r) => r.target === 'joe@pve!nightly' && r.outcome === 'ok',
    );
    assert.equal(record?.actor, 'host root');
    assert.match(record?.source ?? '', /^tokenctl /);
    const event = await arrived(
      hooks,
      (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!nightly',
    );
    assert.equal(event.data.actor, 'host root');
  });

  it('acts on a receipt left unprocessed by a crash when the manager starts again', async () => {
    await deployment.stop();
    // What a manager that fsynced a receipt, answered and died before revoking leaves behind.
    const journal = path.join(dir, 'etc', 'leak-reports', 'receipts.jsonl');
    writeFileSync(
      journal,
      `${JSON.stringify({ seq: 1000, time: new Date().toISOString(), source: '192.0.2.7', tokens: ['joe@pve!later'] })}\n{"seq":1001,"tor`,
      { mode: 0o600 },
    );
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
    const event = await arrived(
      hooks,
      (e) => e.type === 'token.leaked' && e.data.tokenid === 'joe@pve!later',
    );
    assert.equal(event.data.source, '192.0.2.7');
    assert.equal(await status('joe@pve!later'), 401);
  });

  it('answers 429 to a source past its budget', async () => {
    // The default budget: 20 secrets, one forgiven per second; a report of 20 costs 20.
    const full = Array.from({ length: 20 }, (_, i) => `garbage-${i}`);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await report({ secrets: full })).status);
    assert.equal(statuses[0], 202);
    assert.ok(statuses.includes(429), `statuses ${statuses}`);
    const refused = await report({ secrets: ['one-more'] });
    assert.equal(refused.status, 429, refused.raw);
  });
});

describe("revoking a leaked secret under the units' restrictions", () => {
  let current: Daemons | null = null;
  let hooks: Receiver | null = null;
  after(async () => {
    await current?.stop();
    await hooks?.close();
  });

  it('manager bounded to its unit, API as nobody: the receipt is kept, the token revoked everywhere', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const [port] = await freePorts(1);
    hooks = await receiver(port as number);
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    writeFileSync(
      path.join(dir, 'etc', 'webhooks.json'),
      JSON.stringify({ endpoints: [{ url: hooks.url, secret: SECRET, events: ['token.leaked'] }] }),
      { mode: 0o600 },
    );
    const d = await startDaemons(dir, [], layout.harness);
    current = d;
    const made = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'leaky',
      fields: { privsep: false },
    });
    assert.equal(made.ok, true, JSON.stringify(made));
    const secret = (made.data as { value: string }).value;
    const header = pveHeader('root@pam!leaky', secret);
    for (let i = 0; i < 4; i++) {
      assert.equal((await call(d, 'GET', '/version', { auth: header })).status, 200);
    }
    const answer = await call(d, 'POST', '/access/leaked-secrets', { json: { secrets: [secret] } });
    assert.equal(answer.status, 202, answer.raw);
    await arrived(hooks, (e) => e.type === 'token.leaked' && e.data.tokenid === 'root@pam!leaky');
    for (let i = 0; i < 4; i++) {
      assert.equal(
        (await call(d, 'GET', '/version', { auth: header })).status,
        401,
        'every worker',
      );
    }
  });
});
