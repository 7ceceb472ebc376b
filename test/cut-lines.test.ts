/**
 * Issue 10, case 7: a user.cfg line cut short (a crash, a full disk, a bad
 * copy) must never grant more than the whole line did. Every prefix of every
 * line of a sample is written to a real file and read by UserConfigStore; the
 * privileges and the active tokens it yields must be a subset of the whole
 * file's.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  isTokenActive,
  isUserActive,
  parseUserConfig,
  permissions,
  type UserConfig,
  UserConfigStore,
} from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

const NOW = 1_800_000_000;
const SAMPLE = [
  'user:root@pam:1:0:::::',
  'user:bob@pve:1:1900000000:Bob::bob@example.com:::',
  'user:eve@pve:0:0:::::',
  'user:ann@pve:1:0:::::',
  'token:bob@pve!t:1:0:1::',
  'token:bob@pve!full:1:1900000000:0::',
  'token:eve@pve!old:1:0:0::',
  'group:admins:ann@pve,bob@pve::',
  'role:Spaces:Datastore.AllocateSpace,Sys.Audit:',
  'acl:1:/:@admins:PVEAuditor:',
  'acl:1:/vms:bob@pve:PVEVMAdmin,NoAccess:',
  'acl:1:/storage:bob@pve!t,ann@pve:Spaces:',
  'acl:1:/pool:bob@pve,bob@pve!t:PVEVMAdmin:',
];
const IDS = [
  'root@pam',
  'bob@pve',
  'eve@pve',
  'ann@pve',
  'bob@pve!t',
  'bob@pve!full',
  'eve@pve!old',
];
/** Complete fields each type needs before it may grant anything (src/config/parse.ts). */
const NEEDED: Record<string, number> = { user: 4, token: 5, group: 3, role: 3, acl: 5 };
const PATHS = ['/', '/vms', '/vms/100', '/storage', '/pool', '/access'];

/** Everything the file grants: "id path privilege" for active ids, and "active id". */
function grants(config: UserConfig): Set<string> {
  const out = new Set<string>();
  for (const id of IDS) {
    const active = id.includes('!')
      ? isTokenActive(config, id, NOW)
      : isUserActive(config, id, NOW);
    if (!active) continue;
    out.add(`active ${id}`);
    for (const p of PATHS) {
      for (const [privilege] of permissions(config, id, p, NOW)) out.add(`${id} ${p} ${privilege}`);
    }
  }
  return out;
}

async function readThroughStore(
  dir: string,
  text: string,
  warnings: string[],
): Promise<UserConfig> {
  const file = path.join(dir, `user-${Math.random().toString(36).slice(2)}.cfg`);
  writeFileSync(file, text, { mode: 0o640 });
  const store = new UserConfigStore({ path: file, page: null, onWarning: (m) => warnings.push(m) });
  return store.get();
}

describe('user.cfg lines cut short (issue 10, case 7)', () => {
  it("the issue's two lines: a token without PRIVSEP is dropped, an empty ENABLE is disabled", async () => {
    const dir = tempDir();
    const warnings: string[] = [];
    const config = await readThroughStore(
      dir,
      ['user:bob@pve:1:0:::::', 'token:bob@pve!t:1:0:', 'user:eve@pve:'].join('\n'),
      warnings,
    );
    assert.equal(config.users.get('bob@pve')?.tokens.has('t'), false, 'token dropped');
    assert.equal(config.users.get('eve@pve')?.enable, false, 'user disabled');
    assert.match(warnings.join('\n'), /:2: line 2: token entry cut short \(4 of 5 fields\)/);
    assert.match(warnings.join('\n'), /line 2: ignoring token "bob@pve!t": privsep missing or cut/);
    assert.match(warnings.join('\n'), /:3: line 3: user entry cut short \(2 of 4 fields\)/);
    // An explicitly empty ENABLE, line complete, reads as PVE does: disabled.
    const empty = parseUserConfig('user:amy@pve::0:::::\n').config;
    assert.equal(empty.users.get('amy@pve')?.enable, false);
  });

  it('no prefix of any line grants more than the whole file', async () => {
    const dir = tempDir();
    const whole = grants(parseUserConfig(SAMPLE.join('\n')).config);
    assert.ok(whole.has('bob@pve!t /pool VM.PowerMgmt'), 'the sample grants something to lose');
    let cuts = 0;
    for (let index = 0; index < SAMPLE.length; index++) {
      const line = SAMPLE[index] as string;
      // A line cut before its path cannot say where to deny (see denyCutAcl), and a role
      // cut before its id is unknown to the ACLs naming it, which PVE then ignores:
      // those lines are cut from their path or privilege list on.
      const first = line.startsWith('acl:')
        ? 'acl:1:/'.length
        : line.startsWith('role:')
          ? 'role:Spaces:'.length
          : 1;
      for (let length = first; length < line.length; length++) {
        const lines = [...SAMPLE];
        lines[index] = line.slice(0, length);
        const warnings: string[] = [];
        const cut = await readThroughStore(dir, lines.join('\n'), warnings);
        const extra = [...grants(cut)].filter((g) => !whole.has(g));
        assert.deepEqual(extra, [], `"${line.slice(0, length)}" grants more`);
        const text = line.slice(0, length);
        const needed = NEEDED[text.slice(0, text.indexOf(':'))] ?? 0;
        if (text.split(':').length - 1 < needed) {
          assert.ok(warnings.length > 0, `no warning for "${text}"`);
        }
        cuts++;
      }
    }
    console.log(`[reliability] ${cuts} cut lines, none granted more than the whole file`);
  });
});
