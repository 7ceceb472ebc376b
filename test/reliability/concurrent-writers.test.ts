/**
 * Concurrent writers: 4 processes make mixed changes to tokens and ACLs at the
 * same time (own users and tokens, ACL entries on shared and own paths), all
 * through Mutations on one deployment. Replaying every acknowledged change in
 * each writer's order must give exactly the files on disk: no lost update.
 * Writers touch disjoint entries (even on a shared ACL path, each its own user
 * or tokens), so their changes commute and the order across writers does not
 * matter; every one of them is a read-modify-write of the same user.cfg.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { normalizeAclPath } from '../../src/config/syntax.js';
import { HashPool, listAcl, parseUserConfig } from '../../src/index.js';
import { ensureDirectories } from '../../src/service/deployment.js';
import { resolveSettings } from '../../src/service/settings.js';
import { parseShadow } from '../../src/shadow/file.js';
import { fixture } from '../helpers/children.js';
import { tempDir } from '../helpers/tmp.js';
import { type LineChild, LONG, newSeed, pick, report, seconds, spawnLines } from './common.js';

const WRITERS = 4;
const CHANGES = pick(40, 250);
const mutator = fixture('reliability-mutator');

interface TokenState {
  enable: boolean;
  privsep: boolean;
  comment: string;
}

interface Expected {
  users: Map<string, string>;
  tokens: Map<string, TokenState>;
  secrets: Map<string, string>;
  /** `path type ugid role` -> propagate. */
  acl: Map<string, boolean>;
}

type Ack = Record<string, unknown> & { op: string };

function replay(expected: Expected, writer: number, ack: Ack): void {
  const userid = `cw${writer}@pve`;
  const tokenid = `${userid}!${ack.name as string}`;
  switch (ack.op) {
    case 'user.create':
      expected.users.set(userid, `writer ${writer}`);
      return;
    case 'token.create': {
      const fields = ack.fields as { privsep: boolean; comment: string };
      expected.tokens.set(tokenid, { enable: true, ...fields });
      expected.secrets.set(tokenid, ack.secret as string);
      return;
    }
    case 'token.rotate':
      expected.secrets.set(tokenid, ack.secret as string);
      return;
    case 'token.update': {
      const token = expected.tokens.get(tokenid);
      assert.ok(token, `update of unknown ${tokenid}`);
      Object.assign(token, ack.changes);
      return;
    }
    case 'token.delete':
      expected.tokens.delete(tokenid);
      expected.secrets.delete(tokenid);
      for (const key of [...expected.acl.keys()]) {
        if (key.split(' ')[1] === 'token' && key.split(' ')[2] === tokenid)
          expected.acl.delete(key);
      }
      return;
    case 'acl': {
      const r = ack.request as {
        path: string;
        roles: string[];
        users?: string[];
        tokens?: string[];
        propagate: boolean;
        delete: boolean;
      };
      const targets = [
        ...(r.users ?? []).map((id) => ['user', id]),
        ...(r.tokens ?? []).map((id) => ['token', id]),
      ];
      for (const [type, ugid] of targets) {
        for (const role of r.roles) {
          const key = `${normalizeAclPath(r.path)} ${type} ${ugid} ${role}`;
          if (r.delete) expected.acl.delete(key);
          else expected.acl.set(key, r.propagate);
        }
      }
      return;
    }
    default:
      assert.fail(`unknown change ${ack.op}`);
  }
}

describe('reliability: concurrent writers', () => {
  const pool = new HashPool({ threads: 2, maxQueue: 1000 });
  after(() => pool.close());

  it(`${WRITERS} processes x ${CHANGES} mixed changes: the files equal the replay of every acknowledged change`, async () => {
    const dir = tempDir();
    const settings = resolveSettings({ configDir: `${dir}/etc`, runtimeDir: `${dir}/run` });
    await ensureDirectories(settings);
    const seed = Number(process.env.RELIABILITY_SEED ?? newSeed());
    const acks: Ack[][] = Array.from({ length: WRITERS }, () => []);
    const problems: string[] = [];
    const children: LineChild[] = [];
    const ready: Array<Promise<void>> = [];
    const done: Array<Promise<void>> = [];
    try {
      for (let i = 0; i < WRITERS; i++) {
        let onReady: () => void = () => undefined;
        ready.push(
          new Promise<void>((resolve) => {
            onReady = resolve;
          }),
        );
        const child = spawnLines(
          mutator,
          [settings.configDir, settings.runtimeDir, String(i), String(CHANGES), String(seed + i)],
          (line) => {
            const m = JSON.parse(line) as Ack & { t: string };
            if (m.t === 'ready') onReady();
            else if (m.t === 'ack') acks[i]?.push(m);
            else if (m.t !== 'done') problems.push(`writer ${i}: ${line}`);
          },
          { env: { UV_THREADPOOL_SIZE: '4' } },
        );
        children.push(child);
        done.push(
          child.closed.then(({ code }) => {
            if (code !== 0) problems.push(`writer ${i} exited ${code}: ${child.stderr()}`);
          }),
        );
      }
      await Promise.race([Promise.all(ready), Promise.all(done)]);
      assert.deepEqual(problems, []);
      const started = performance.now();
      for (const child of children) child.process.stdin?.write('go\n');
      await Promise.all(done);
      const elapsed = performance.now() - started;
      assert.deepEqual(problems, []);

      const expected: Expected = {
        users: new Map(),
        tokens: new Map(),
        secrets: new Map(),
        acl: new Map(),
      };
      acks.forEach((list, writer) => {
        for (const ack of list) replay(expected, writer, ack);
      });
      const total = acks.reduce((n, list) => n + list.length, 0);

      const parsed = parseUserConfig(readFileSync(settings.userCfgPath, 'utf8'));
      assert.deepEqual(parsed.warnings, []);
      const config = parsed.config;
      const lost: string[] = [];
      const users = [...config.users].filter(([id]) => id !== 'root@pam');
      assert.deepEqual(
        new Map(users.map(([id, u]) => [id, u.comment])),
        expected.users,
        'users differ from the replay',
      );
      const tokensOnDisk = new Map<string, TokenState>();
      for (const [userid, user] of users) {
        for (const [name, t] of user.tokens) {
          tokensOnDisk.set(`${userid}!${name}`, {
            enable: t.enable,
            privsep: t.privsep,
            comment: t.comment,
          });
        }
      }
      for (const [id, want] of expected.tokens) {
        if (JSON.stringify(tokensOnDisk.get(id)) !== JSON.stringify(want)) {
          lost.push(
            `${id}: ${JSON.stringify(tokensOnDisk.get(id))}, expected ${JSON.stringify(want)}`,
          );
        }
      }
      for (const id of tokensOnDisk.keys()) {
        if (!expected.tokens.has(id)) lost.push(`${id}: on disk, but deleted`);
      }
      const aclOnDisk = new Map(
        listAcl(config).map((e) => [`${e.path} ${e.type} ${e.ugid} ${e.roleid}`, e.propagate]),
      );
      for (const [key, propagate] of expected.acl) {
        if (aclOnDisk.get(key) !== propagate) lost.push(`acl ${key}: ${aclOnDisk.get(key)}`);
      }
      for (const key of aclOnDisk.keys()) {
        if (!expected.acl.has(key)) lost.push(`acl ${key}: on disk, but deleted`);
      }
      const shadow = parseShadow(settings.shadowPath, readFileSync(settings.shadowPath, 'utf8'));
      for (const id of shadow.keys()) {
        if (!expected.secrets.has(id)) lost.push(`${id}: secret on disk, but deleted`);
      }
      const verified = await Promise.all(
        [...expected.secrets].map(async ([id, secret]) => {
          const hash = shadow.get(id);
          return hash !== undefined && (await pool.verify(hash, secret)) ? null : id;
        }),
      );
      for (const id of verified) if (id !== null) lost.push(`${id}: acknowledged secret lost`);

      report(`concurrent writers (${LONG ? 'long' : 'quick'}, seed ${seed})`, [
        `${WRITERS} processes x ${CHANGES} changes = ${total} acknowledged changes, ` +
          `${lost.length} lost`,
        `final state: ${expected.tokens.size} tokens (all ${expected.secrets.size} secrets ` +
          `verified), ${expected.acl.size} ACL entries on ${new Set([...expected.acl.keys()].map((k) => k.split(' ')[0])).size} paths`,
        `time: ${seconds(elapsed)} (${(total / (elapsed / 1000)).toFixed(0)} changes/s)`,
      ]);
      assert.equal(total, WRITERS * CHANGES);
      assert.deepEqual(lost, []);
    } finally {
      await Promise.all(children.map((c) => c.kill()));
    }
  });
});
