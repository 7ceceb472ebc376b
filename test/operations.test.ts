/**
 * The operation table's writes on real files, as tokenctl and the manager run
 * them: two writers racing on the same files, and params that crossed a
 * process boundary checked before anything changes.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ParameterError } from '../src/errors.js';
import { openDeployment } from '../src/service/deployment.js';
import {
  createToken,
  createUser,
  deleteToken,
  OPERATIONS,
  rotateToken,
  runWrite,
  updateAcl,
} from '../src/service/operations.js';
import { HOST_ROOT } from '../src/service/rules.js';
import { resolveSettings } from '../src/service/settings.js';
import { FileStorage } from '../src/service/storage.js';
import { readShadow } from '../src/shadow/file.js';
import { tempDir } from './helpers/tmp.js';

/** Settings of a new deployment in a temporary directory, its directories made. */
function freshSettings() {
  const dir = tempDir();
  const settings = resolveSettings({
    configDir: path.join(dir, 'etc'),
    runtimeDir: path.join(dir, 'run'),
    workers: 1,
    hashThreads: 1,
  });
  mkdirSync(settings.configDir, { recursive: true });
  mkdirSync(path.dirname(settings.pagePath), { recursive: true });
  return settings;
}

describe('write operations on real files', () => {
  it('a rotation racing a delete leaves no orphan secret (two writers on the same files)', async () => {
    const settings = freshSettings();
    // Two deployments are two writers as two processes would be: own caches, the files' locks.
    const da = openDeployment(settings, 'cli');
    const db = openDeployment(settings, 'cli');
    const a = new FileStorage(da.users, da.shadow);
    const b = new FileStorage(db.users, db.shadow);
    try {
      await runWrite(createUser, a, HOST_ROOT, { userid: 'race@pve', fields: {} });
      let raced = 0;
      for (let round = 0; round < 5; round++) {
        const params = { userid: 'race@pve', tokenName: `t${round}` };
        await runWrite(createToken, a, HOST_ROOT, { ...params, fields: {} });
        const [rotated] = await Promise.allSettled([
          runWrite(rotateToken, a, HOST_ROOT, params),
          runWrite(deleteToken, b, HOST_ROOT, params),
        ]);
        if (rotated.status === 'rejected') raced++;
        const left = (await readShadow(settings.shadowPath)).entries;
        assert.equal(left.has(`race@pve!t${round}`), false, `round ${round}: an orphan secret`);
      }
      console.log(
        `[reliability] rotate vs delete: ${raced} of 5 rotations lost the race, 0 orphans`,
      );
    } finally {
      await da.close();
      await db.close();
    }
  });

  it('acl.update refuses lists that are not lists of strings, and changes nothing', async () => {
    const settings = freshSettings();
    const d = openDeployment(settings, 'cli');
    try {
      await runWrite(createUser, new FileStorage(d.users, d.shadow), HOST_ROOT, {
        userid: 'acl@pve',
        fields: {},
      });
      const before = await d.users.get();
      for (const users of [[{ toString: () => 'acl@pve' }], 'acl@pve', [1]]) {
        assert.throws(
          () => updateAcl.parse({ path: '/', roles: ['PVEAuditor'], users } as never),
          ParameterError,
        );
      }
      assert.throws(
        () => updateAcl.parse({ path: '/', roles: ['PVEAuditor'], propagate: 'yes' } as never),
        ParameterError,
      );
      assert.equal((await d.users.get()).acl.size, before.acl.size);
    } finally {
      await d.close();
    }
  });

  it('token.delete and token.revoke-leaked name the token whose last use the manager forgets; no other write does', () => {
    const naming = [...OPERATIONS.values()].filter(
      (op) => op.access === 'write' && op.deletedToken !== undefined,
    );
    assert.deepEqual(naming.map((op) => op.name).sort(), ['token.delete', 'token.revoke-leaked']);
    for (const op of naming) {
      const { deletedToken } = op as { deletedToken: (params: object) => string };
      const named = deletedToken({ userid: 'a@pve', tokenName: 't' });
      assert.equal(named, 'a@pve!t', op.name);
    }
    assert.equal(deleteToken.deletedToken?.({ userid: 'a@pve', tokenName: 't' }), 'a@pve!t');
  });
});
