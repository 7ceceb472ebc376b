/**
 * Revoking a leaked secret in multi-host mode, with real parts: a real
 * 3-member etcd on loopback and two hosts (manager with its sync agent, one
 * API worker each). A token made on host A, its secret reported to host B's
 * API: the revocation goes through etcd as any change does, so both hosts
 * refuse the secret, and the cluster's audit trail has it once, with the
 * reporter's address.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call } from '../harness/daemons.js';
import { etcdUnavailable } from '../harness/etcd.js';
import { type Host, type MultiHost, startMultiHost, startVerifier } from '../harness/multihost.js';
import { makeToken } from '../harness/revoke-scenarios.js';
import { tokenctlIn } from '../harness/tokenctl.js';
import type { AuditRecord } from '../src/audit/trail.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# multi-host leak tests skipped: ${noEtcd}\n`);

describe('a leaked secret reported to another host', { skip: noEtcd ?? false }, () => {
  let cluster: MultiHost;
  before(
    async () => {
      cluster = await startMultiHost({ hosts: 2, members: 3, workers: 1 });
    },
    { timeout: 120_000 },
  );
  after(() => cluster?.stop(), { timeout: 120_000 });

  it('is revoked on every host, and recorded once in the cluster trail', {
    timeout: 90_000,
  }, async () => {
    const [a, b] = cluster.hosts as [Host, Host];
    const token = await makeToken(a);
    const secret = token.header.slice(token.header.lastIndexOf('=') + 1);
    const verifiers = [a, b].map((host) => startVerifier(host, token.header));
    try {
      await Promise.all(verifiers.map((v) => v.saw(200)));
      const answer = await call(b.api, 'POST', '/access/leaked-secrets', {
        json: { secrets: [secret] },
      });
      assert.equal(answer.status, 202, answer.raw);
      assert.equal(answer.raw, '{"data":null}');
      // Both hosts refuse it once B's manager has revoked it through etcd.
      await Promise.all(verifiers.map((v) => v.saw(401)));
    } finally {
      for (const v of verifiers) await v.stop();
    }
    const run = await tokenctlIn(a.dir, '--output', 'json', 'audit', '--op', 'token.revoke-leaked');
    assert.equal(run.code, 0, run.stderr);
    const records = (JSON.parse(run.stdout) as AuditRecord[]).filter(
      (r) => r.target === `root@pam!${token.name}`,
    );
    assert.equal(records.length, 1, 'once for the cluster');
    assert.equal(records[0]?.actor, 'leak-report');
    assert.equal(records[0]?.source, '127.0.0.1');
    assert.ok(records[0]?.revision, 'with its etcd revision');
  });
});
