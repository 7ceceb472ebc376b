/**
 * `npm run demo:cluster` (demo/cluster.ts) run once, as a newcomer runs it:
 * a 3-member etcd and three hosts on loopback, a token made on host a and
 * accepted on all three, revoked on a and refused on all three. Needs
 * Debian's etcd-server (no network namespaces: the demo stays on loopback);
 * says why when it skips.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { etcdUnavailable } from '../harness/etcd.js';
import { runChild } from './helpers/children.js';

const DEMO = fileURLToPath(new URL('../demo/cluster.js', import.meta.url));
const why = etcdUnavailable();
if (why) process.stdout.write(`# demo:cluster test skipped: ${why}\n`);

/** The host and answer of each `GET <host>/version -> <status> <word>` line of `text`. */
function answers(text: string): Array<[string, string]> {
  return [...text.matchAll(/GET (\w+)\/version -> (\d+ \w+)/g)].map(
    (match) => [match[1], match[2]] as [string, string],
  );
}

describe('npm run demo:cluster', { skip: why ?? false }, () => {
  it('shows the token accepted on hosts a, b and c, and refused on all three once the revoke returned', {
    timeout: 180_000,
  }, async () => {
    const { code, stdout, stderr } = await runChild(DEMO, []);
    assert.equal(code, 0, `the demo failed:\n${stdout}\n${stderr}`);
    const revoked = stdout.indexOf('revoked on host a');
    assert.ok(revoked > 0, stdout);
    const accepted = ['a', 'b', 'c'].map((host) => [host, '200 accepted']);
    const refused = ['a', 'b', 'c'].map((host) => [host, '401 refused']);
    assert.deepEqual(answers(stdout.slice(0, revoked)), accepted);
    assert.deepEqual(answers(stdout.slice(revoked)), refused);
    // The cluster as `tokenctl cluster status` sees it: every host live, then all stopped.
    assert.equal(stdout.match(/^ {2}\w+: live, acked \d+/gm)?.length, 3, stdout);
    assert.match(stdout, /stopping \.\.\.\s*$/);
  });
});
