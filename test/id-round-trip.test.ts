/**
 * Issue 22, case 7: ids that are not what they look like, against the real
 * daemons and the real user.cfg. A user id must come back from user.cfg as
 * it went in: no lone surrogate (written as U+FFFD, the twin of another id)
 * and no ',' or ';' (user.cfg splits a group's members and an ACL line's ids
 * there). And an ACL path no ACL can name is a 400, not a 403.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call, type Daemons, pveHeader, startDaemons } from '../harness/daemons.js';
import { InvalidIdError } from '../src/errors.js';
import { parseUserid } from '../src/ids.js';
import { callExpecting, createRootToken } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

describe('ids that cannot round-trip through user.cfg (issue 22, case 7)', () => {
  const dir = tempDir();
  const userCfg = path.join(dir, 'etc', 'user.cfg');
  let d: Daemons;
  let root: string;

  before(async () => {
    d = await startDaemons(dir);
    root = (await createRootToken(d, 'ids')).header;
  });
  after(() => d?.stop());

  /** A new user with `role` on `aclPath` and a token `t` of its own (privsep 0): its header. */
  async function userWithRole(userid: string, aclPath: string, role: string): Promise<string> {
    await callExpecting(200, d, 'POST', '/access/users', { auth: root, form: { userid } });
    await callExpecting(200, d, 'PUT', '/access/acl', {
      auth: root,
      form: { path: aclPath, users: userid, roles: role },
    });
    const made = await callExpecting(200, d, 'POST', `/access/users/${userid}/token/t`, {
      auth: root,
      form: { privsep: 0 },
    });
    return pveHeader(`${userid}!t`, (made.body.data as { value: string }).value);
  }

  it('refuses a lone surrogate and the list separators in a user name', () => {
    for (const id of ['a\uD800b@pve', 'a\uDC00@pve', 'x,root@pam,y@pve', 'x;y@pve']) {
      assert.throws(() => parseUserid(id), InvalidIdError, JSON.stringify(id));
    }
    // What PVE allows stays allowed: '@' and '!' in the name, non-ASCII letters.
    assert.equal(parseUserid('a@b!c@pve').name, 'a@b!c');
    assert.equal(parseUserid('zoë@pve').name, 'zoë');
  });

  it('a user id with a lone surrogate is a 400, not a twin of an existing user', async () => {
    await callExpecting(200, d, 'POST', '/access/users', {
      auth: root,
      json: { userid: 'tw\uFFFDin@pve' },
    });
    const twin = await call(d, 'POST', '/access/users', {
      auth: root,
      json: { userid: 'tw\uD800in@pve' },
    });
    const lines = readFileSync(userCfg, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('user:tw'));
    assert.equal(twin.status, 400, `${twin.raw}; user.cfg: ${JSON.stringify(lines)}`);
    assert.equal(lines.length, 1, JSON.stringify(lines));
  });

  it('a user id with "," created into a group by a user admin does not add root@pam to it', async () => {
    await callExpecting(200, d, 'POST', '/access/groups', { auth: root, form: { groupid: 'G' } });
    const admin = await userWithRole('admin@pve', '/access', 'PVEUserAdmin');
    // The direct way is refused...
    await callExpecting(403, d, 'PUT', '/access/users/root@pam', {
      auth: admin,
      form: { groups: 'G' },
    });
    // ...and so is the way round: an id that reads back as root@pam and another user.
    const sneaky = await call(d, 'POST', '/access/users', {
      auth: admin,
      form: { userid: 'x,root@pam,y@pve', groups: 'G' },
    });
    const groupLine = readFileSync(userCfg, 'utf8')
      .split('\n')
      .find((line) => line.startsWith('group:G:'));
    assert.equal(sneaky.status, 400, `${sneaky.raw}; user.cfg: ${groupLine}`);
    assert.equal(groupLine, 'group:G:::');
  });

  it('an invalid ACL path is a 400 for a caller who may change ACLs, not a 403', async () => {
    const acl = await userWithRole('acl@pve', '/', 'Administrator');
    for (const bad of ['vms', '/vms/../access', '/a b']) {
      const reply = await call(d, 'PUT', '/access/acl', {
        auth: acl,
        form: { path: bad, users: 'acl@pve', roles: 'PVEAuditor' },
      });
      assert.equal(reply.status, 400, `${bad}: ${reply.raw}`);
      assert.equal(reply.body.errors?.path, 'invalid', reply.raw);
    }
    // A valid path the caller may change still works.
    await callExpecting(200, d, 'PUT', '/access/acl', {
      auth: acl,
      form: { path: '/vms/100', users: 'acl@pve', roles: 'PVEAuditor' },
    });
  });
});
