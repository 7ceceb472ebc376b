/**
 * Bulk revocation over HTTP (issue 25): POST /access/tokens/revoke against the
 * real daemons takes every matching token in one call, and none of their
 * secrets is accepted once it returned; a caller without User.Modify is refused
 * and nothing changes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Api, call, type Deployment, pveHeader, startDeployment } from '../harness/daemons.js';
import { tempDir } from './helpers/tmp.js';

describe('bulk revocation over HTTP', () => {
  let deployment: Deployment;
  let api: Api;
  const dir = tempDir(); // here, not in the hook: its cleanup belongs to the file
  before(async () => {
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
  });
  after(() => deployment?.stop());

  async function newToken(userid: string, tokenName: string, comment: string): Promise<string> {
    const created = await deployment.asRoot('token.create', {
      userid,
      tokenName,
      fields: { privsep: false, comment },
    });
    assert.equal(created.ok, true, JSON.stringify(created));
    return pveHeader(`${userid}!${tokenName}`, (created as { data: { value: string } }).data.value);
  }

  it('revokes every match in one call; a revoked secret is refused by every worker at once', async () => {
    for (const userid of ['joe@pve', 'ann@pve']) {
      const made = await deployment.asRoot('user.create', { userid, fields: {} });
      assert.equal(made.ok, true, JSON.stringify(made));
    }
    const admin = await newToken('root@pam', 'admin', '');
    const joeCi = await newToken('joe@pve', 'ci', 'ci runner');
    const joeBackup = await newToken('joe@pve', 'backup', 'backup');
    const annCi = await newToken('ann@pve', 'ci', 'ci nightly');
    // Each credential cached in the workers first (two calls: the pool spreads them).
    for (const auth of [joeCi, joeBackup, annCi, joeCi, joeBackup, annCi]) {
      assert.equal((await call(api, 'GET', '/version', { auth })).status, 200);
    }

    const refused = await call(api, 'POST', '/access/tokens/revoke', {
      auth: joeBackup,
      form: { users: 'ann@pve', comment: 'ci *' },
    });
    assert.equal(refused.status, 403, refused.raw);
    assert.equal(
      (await call(api, 'GET', '/version', { auth: annCi })).status,
      200,
      'nothing taken',
    );

    const missing = await call(api, 'POST', '/access/tokens/revoke', { auth: admin, form: {} });
    assert.equal(missing.status, 400, missing.raw);

    const revoked = await call(api, 'POST', '/access/tokens/revoke', {
      auth: admin,
      form: { users: 'joe@pve,ann@pve', comment: 'ci *' },
    });
    assert.equal(revoked.status, 200, revoked.raw);
    assert.deepEqual(revoked.body.data, { revoked: ['ann@pve!ci', 'joe@pve!ci'] });
    for (let round = 0; round < 2; round++) {
      assert.equal((await call(api, 'GET', '/version', { auth: joeCi })).status, 401);
      assert.equal((await call(api, 'GET', '/version', { auth: annCi })).status, 401);
      assert.equal((await call(api, 'GET', '/version', { auth: joeBackup })).status, 200);
    }
  });
});
