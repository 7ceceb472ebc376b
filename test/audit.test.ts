/**
 * The audit trail: every change, by tokenctl or through the API, recorded
 * with who, from where, what and how it ended, never a secret; `tokenctl
 * audit` queries it and `tokenctl audit verify` finds a record removed,
 * altered or cut from the end, across rotated files too.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Api, type Deployment, startDeployment } from '../harness/daemons.js';
import { tokenctlIn } from '../harness/tokenctl.js';
import { type AuditRecord, AuditTrail } from '../src/audit/trail.js';
import { callExpecting, createRootToken } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

async function ok(dir: string, ...args: string[]): Promise<string> {
  const run = await tokenctlIn(dir, ...args);
  assert.equal(run.code, 0, `tokenctl ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

async function records(dir: string, ...filters: string[]): Promise<AuditRecord[]> {
  return JSON.parse(await ok(dir, '--output', 'json', 'audit', ...filters)) as AuditRecord[];
}

/** Every file of the trail, as text: what must never hold a secret. */
function trailText(auditDir: string): string {
  return readdirSync(auditDir)
    .map((name) => readFileSync(path.join(auditDir, name), 'utf8'))
    .join('');
}

describe("tokenctl's changes in the trail", () => {
  const dir = tempDir();
  const auditDir = path.join(dir, 'etc', 'audit');
  let secret: string;
  before(async () => {
    await ok(dir, 'user', 'add', 'joe@pve', '--comment', 'CI');
    secret = (
      JSON.parse(await ok(dir, '--output', 'json', 'token', 'add', 'joe@pve!ci')) as {
        value: string;
      }
    ).value;
    await ok(dir, 'token', 'remove', 'joe@pve!ci');
    const refused = await tokenctlIn(dir, 'token', 'remove', 'joe@pve!ci');
    assert.equal(refused.code, 1, 'removing it twice fails');
  });

  it('records each change and each refusal with actor, source, target and fields', async () => {
    const all = await records(dir);
    assert.deepEqual(
      all.map((r) => [r.seq, r.op, r.target, r.outcome]),
      [
        [1, 'user.create', 'joe@pve', 'ok'],
        [2, 'token.create', 'joe@pve!ci', 'ok'],
        [3, 'token.delete', 'joe@pve!ci', 'ok'],
        [4, 'token.delete', 'joe@pve!ci', 'refused'],
      ],
    );
    for (const record of all) {
      assert.equal(record.actor, 'host root');
      assert.match(record.source, /^tokenctl uid=\d+ pid=\d+$/);
      assert.match(record.time, /^\d{4}-\d\d-\d\dT/);
    }
    assert.deepEqual(all[0]?.changes, { fields: { comment: 'CI' } });
    assert.equal(all[3]?.status, 404);
    assert.ok(!trailText(auditDir).includes(secret), 'no secret in the trail');
  });

  it('filters by token, operation and time', async () => {
    assert.equal((await records(dir, '--token', 'joe@pve!ci')).length, 3);
    assert.deepEqual(
      (await records(dir, '--op', 'user.create')).map((r) => r.seq),
      [1],
    );
    assert.equal((await records(dir, '--since', '1h')).length, 4);
    assert.equal((await records(dir, '--since', '2999-01-01')).length, 0);
    assert.equal((await records(dir, '--actor', 'root@pam')).length, 0);
  });

  it('verifies, then finds an altered record, a removed one and a cut end', async () => {
    assert.match(await ok(dir, 'audit', 'verify'), /verified 4 records in 1 files/);
    const [file] = readdirSync(auditDir).filter((n) => n.endsWith('.log'));
    const logPath = path.join(auditDir, file as string);
    const original = readFileSync(logPath, 'utf8');
    const lines = original.trimEnd().split('\n');

    writeFileSync(logPath, `${original.replace('"comment":"CI"', '"comment":"ci"')}`);
    let run = await tokenctlIn(dir, 'audit', 'verify');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /line 1 \(seq 1\): altered/);

    writeFileSync(logPath, `${[lines[0], lines[2], lines[3]].join('\n')}\n`);
    run = await tokenctlIn(dir, 'audit', 'verify');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /seq 3\): does not follow seq 1/);

    writeFileSync(logPath, `${lines.slice(0, 3).join('\n')}\n`);
    run = await tokenctlIn(dir, 'audit', 'verify');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /ends at seq 3 but its head says 4/);

    writeFileSync(logPath, original);
    assert.match(await ok(dir, 'audit', 'verify'), /verified 4 records/);
  });
});

describe('a trail across rotated files', () => {
  it('chains each file to the one before, so a removed file is found', async () => {
    const dir = tempDir();
    const trail = new AuditTrail({ dir, host: 'h', rotateBytes: 300 });
    for (let i = 0; i < 6; i++) {
      await trail.append({
        actor: 'host root',
        source: 'test',
        op: 'user.update',
        target: `u${i}@pve`,
        changes: { comment: 'x'.repeat(100) },
        outcome: 'ok',
      });
    }
    const files = readdirSync(dir).filter((n) => n.endsWith('.log'));
    assert.ok(files.length >= 3, `rotated into ${files.length} files`);
    assert.deepEqual(await trail.verify(), { ok: true, records: 6, files: files.length });
    rmSync(path.join(dir, files[1] as string));
    const broken = await trail.verify();
    assert.equal(broken.ok, false);
    assert.match(broken.ok ? '' : broken.problem, /does not follow/);
  });
});

describe('API changes in the trail, recorded by the manager', () => {
  let deployment: Deployment;
  let api: Api;
  const dir = tempDir();
  before(async () => {
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '1', '--hash-threads', '1']);
  });
  after(() => deployment?.stop());

  it("names the caller's token and address, and a refusal's status", async () => {
    const admin = (await createRootToken(deployment, 'admin')).header;
    await callExpecting(200, api, 'POST', '/access/users', {
      auth: admin,
      form: { userid: 'amy@pve', comment: 'made over HTTP' },
    });
    await callExpecting(400, api, 'POST', '/access/users', {
      auth: admin,
      form: { userid: 'amy@pve' },
    });

    const all = await records(dir);
    const byApi = all.filter((r) => r.actor === 'root@pam!admin');
    assert.deepEqual(
      byApi.map((r) => [r.op, r.target, r.outcome, r.status ?? null]),
      [
        ['user.create', 'amy@pve', 'ok', null],
        ['user.create', 'amy@pve', 'refused', 400],
      ],
    );
    for (const record of byApi) assert.match(record.source, /^(::ffff:)?127\.0\.0\.1$/);
    assert.deepEqual(byApi[0]?.changes, { fields: { comment: 'made over HTTP' } });
    // The harness's own token, made over the socket: its source says so.
    assert.equal(all.find((r) => r.op === 'token.create')?.source, 'socket');
    assert.match(await ok(dir, 'audit', 'verify'), /the chain is whole/);
    const logged = deployment.managerLog.lines.find(
      (l) => l.msg === 'mutation' && l.op === 'user.create' && l.outcome === 'ok',
    );
    assert.equal(logged?.seq, byApi[0]?.seq, 'the log line carries the record');
  });
});
