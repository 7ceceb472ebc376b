import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  addToken,
  addUser,
  GenerationPage,
  HashPool,
  Slot,
  setAcl,
  TokenShadow,
  UserConfigStore,
  updateToken,
} from '../src/index.js';
import { FAST_ARGON2 } from './helpers/shadow.js';
import { ShadowClient } from './helpers/shadow-client.js';
import { tempDir } from './helpers/tmp.js';

async function deployment() {
  const dir = tempDir();
  const page = GenerationPage.open(path.join(dir, 'config-versions'));
  const pool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
  const users = new UserConfigStore({ path: path.join(dir, 'user.cfg'), page });
  const shadow = new TokenShadow({ path: path.join(dir, 'token.shadow'), page, pool });
  await users.mutate((config) => {
    addUser(config, 'joe@pve', {});
    addToken(config, 'joe@pve!ci', { privsep: true });
    setAcl(config, '/', { users: ['joe@pve'], roles: ['PVEAuditor'] });
    setAcl(config, '/vms', { tokens: ['joe@pve!ci'], roles: ['PVEVMUser'] });
  });
  const secret = await shadow.generateAndSetSecret('joe@pve!ci');
  const child = await ShadowClient.spawn('auth-child', [dir]);
  return { dir, page, pool, users, shadow, secret, child };
}

describe('cached user info and authenticate() across processes', () => {
  it('a change saved in one process changes the answer in another on its next call', async () => {
    const d = await deployment();
    const header = `PVEAPIToken=joe@pve!ci=${d.secret}`;
    const ok = await d.child.request('authenticate', { header });
    assert.deepEqual(ok.identity, { authid: 'joe@pve!ci', userid: 'joe@pve', tokenName: 'ci' });
    for (let i = 0; i < 10; i++) await d.child.request('authenticate', { header });
    assert.equal((await d.child.request('reloads')).reloads, 1, 'parsed once, then cached');

    const before = d.page.load(Slot.USER_AND_ACL);
    await d.users.mutate((config) => updateToken(config, 'joe@pve!ci', { enable: false }));
    assert.equal(d.page.load(Slot.USER_AND_ACL), before + 1);
    const refused = await d.child.request('authenticate', { header });
    assert.equal(refused.error, 'AuthenticationError');
    assert.equal(refused.reason, 'inactive');

    await d.users.mutate((config) => updateToken(config, 'joe@pve!ci', { enable: true }));
    assert.ok((await d.child.request('authenticate', { header })).identity);

    await d.users.mutate((config) => updateToken(config, 'joe@pve!ci', { expire: 1 }));
    assert.equal((await d.child.request('authenticate', { header })).reason, 'inactive');
    await d.users.mutate((config) => updateToken(config, 'joe@pve!ci', { expire: 0 }));

    // privsep=1: the token has PVEVMUser on /vms, its user only PVEAuditor: the intersection is empty there.
    const check = (privs: string[]) =>
      d.child.request('check', { authid: 'joe@pve!ci', path: '/vms/100', privs });
    assert.equal((await check(['VM.Audit'])).allowed, true);
    assert.equal((await check(['VM.PowerMgmt'])).allowed, false);
    await d.users.mutate((config) =>
      setAcl(config, '/vms', { users: ['joe@pve'], roles: ['PVEVMAdmin'] }),
    );
    assert.equal((await check(['VM.PowerMgmt'])).allowed, true);
    await d.users.mutate((config) =>
      updateToken(config, 'joe@pve!ci', { privsep: true, comment: 'still limited' }),
    );
    assert.equal((await check(['VM.Allocate'])).allowed, false, 'not in the token role');
    await d.child.stop();
    await d.pool.close();
  });

  it('unknown ids, wrong secrets and malformed headers get the same error', async () => {
    const d = await deployment();
    const cases: Array<[string, string]> = [
      [`PVEAPIToken=nobody@pve!ci=${d.secret}`, 'inactive'],
      ['PVEAPIToken=joe@pve!ci=wrong', 'bad-secret'],
      ['Bearer abc', 'unknown-scheme'],
      ['PVEAPIToken=joe@pve=x', 'invalid-id'],
    ];
    for (const [header, reason] of cases) {
      const reply = await d.child.request('authenticate', { header });
      assert.equal(reply.error, 'AuthenticationError', header);
      assert.equal(reply.message, 'authentication failed');
      assert.ok(!String(reply.message).includes(d.secret));
      assert.ok(
        reason === reply.reason || (reason === 'inactive' && reply.reason === 'bad-secret'),
      );
    }
    await d.child.stop();
    await d.pool.close();
  });

  it('a hand edit of user.cfg is seen after the TTL and announced to every process', async () => {
    const d = await deployment();
    const header = `PBSAPIToken joe@pve!ci:${d.secret}`;
    assert.ok((await d.child.request('authenticate', { header })).identity);
    const text = readFileSync(path.join(d.dir, 'user.cfg'), 'utf8');
    const edited = text
      .split('\n')
      .filter((line) => !line.startsWith('token:'))
      .join('\n');
    const generation = d.page.load(Slot.USER_AND_ACL);
    writeFileSync(path.join(d.dir, 'user.cfg'), edited);
    await d.child.request('advance', { ms: 1001 });
    assert.equal((await d.child.request('authenticate', { header })).reason, 'inactive');
    assert.equal(d.page.load(Slot.USER_AND_ACL), generation + 1, 'bumped for the others');
    assert.equal((await d.users.get()).users.get('joe@pve')?.tokens.size, 0);
    await d.child.stop();
    await d.pool.close();
  });
});

describe('a user.cfg that does not exist', () => {
  it('warns once, naming the path, refuses every token, and warns again only after it came back', async () => {
    const dir = tempDir();
    const warnings: string[] = [];
    const file = path.join(dir, 'typo', 'user.cfg');
    const users = new UserConfigStore({
      path: file,
      page: null,
      onWarning: (m) => warnings.push(m),
    });
    const config = await users.get();
    assert.deepEqual([...config.users.keys()], ['root@pam'], 'nobody but the built-in root');
    await users.get();
    assert.equal(users.missing, true);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(
      warnings[0] as string,
      new RegExp(`${file} does not exist: every token is refused`),
    );

    const quiet = new UserConfigStore({
      path: file,
      page: null,
      warnIfMissing: false,
      onWarning: (m) => warnings.push(m),
    });
    await quiet.get();
    assert.equal(warnings.length, 1, 'a writer that creates it is not warned');
  });
});
