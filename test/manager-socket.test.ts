/**
 * Issue 22, cases 4 and 5: the manager's socket against a peer that writes
 * without reading its answers, and a mutation whose forwarded line is longer
 * than the socket takes. The daemons run as deploy/ runs them where this
 * machine allows (test/helpers/units.ts), and the flooding peer as the API's
 * user: nobody in the shared group.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { type Api, call, type Deployment, startDeployment } from '../harness/daemons.js';
import { createRootToken } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';

/** The figure: 600,000 usage reports grew the manager by 162 MiB. */
const PINGS = 600_000;

/** A /proc/PID/status figure, in KiB. */
function statusKiB(pid: number, field: 'VmRSS'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
    readFileSync(`/proc/${pid}/status`, 'utf8'),
  );
  return Number(match?.[1]);
}

/**
 * The peer: writes `count` ping lines as fast as its socket takes them and
 * reads nothing until told to on stdin; then counts the answers. Says
 * `written` once every line is out, `answered N` at the end.
 */
const PEER = `
const net = require('node:net');
const [socketPath, count] = process.argv.slice(1);
const socket = net.createConnection(socketPath);
socket.pause();
let sent = 0;
const batch = Buffer.from('{"id":1,"op":"ping","credential":"","params":{}}\\n'.repeat(1000));
const pump = () => {
  while (sent < Number(count)) {
    sent += 1000;
    if (!socket.write(batch)) return void socket.once('drain', pump);
  }
  console.log('written');
};
socket.on('connect', pump);
socket.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
process.stdin.once('data', () => {
  let answered = 0;
  let rest = '';
  socket.setEncoding('utf8');
  socket.on('data', (text) => {
    rest += text;
    const lines = rest.split('\\n');
    rest = lines.pop();
    answered += lines.filter((l) => l.includes('"pong"')).length;
    if (answered >= Number(count)) {
      console.log('answered ' + answered);
      process.exit(0);
    }
  });
  socket.resume();
});
`;

/** Resolves with the first stdout line of `child` that `match`es. */
function lineOf(child: ChildProcess, match: (line: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      if (match(line)) resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`peer exited (${code}) before the line`)));
  });
}

describe('the manager socket under a peer that does not read (issue 22, cases 4 and 5)', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const socketPath = path.join(dir, 'run', 'manager.sock');
  // As deploy/ lays it out where this machine allows it; else as `npm start` does.
  const layout = unitLayout();
  const asDeployed = typeof layout !== 'string';
  if (!asDeployed) console.log(`[reliability] the npm start layout: ${layout}`);
  let d: Deployment;
  let api: Api;

  before(async () => {
    d = await startDeployment(dir, asDeployed ? layout.harness : {});
    // One worker: one connection to the manager carries every forwarded call.
    api = await d.startApi('api', ['--workers', '1', '--hash-threads', '1']);
  });
  after(() => d?.stop());

  it('case 4: a peer that never reads its answers stops being read; the manager stays small', {
    timeout: 180_000,
  }, async () => {
    const pid = d.manager.pid as number;
    // First a mutation, so that the hashing's memory is in the figure before the flood.
    const token = await createRootToken(d, 'before-flood');
    const before = statusKiB(pid, 'VmRSS');
    // The peer is what the API's user can be: nobody in the shared group, no capabilities.
    const unprivileged = asDeployed ? layout.asApiUser : [];
    const argv = [...unprivileged, process.execPath, '-e', PEER, socketPath, String(PINGS)];
    const peer = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      // Either the manager stops reading (the fix) or it reads every line (before it).
      const paused = d.managerLog.waitFor((l) => /does not read its answers/.test(String(l.msg)));
      const written = lineOf(peer, (l) => l === 'written' || l.startsWith('error'));
      const first = await Promise.race([paused.then(() => 'paused'), written]);
      const grown = statusKiB(pid, 'VmRSS') - before;
      // Other callers, on other connections, are served meanwhile.
      await createRootToken(d, 'during-flood');
      assert.equal((await call(api, 'GET', '/version', { auth: token.header })).status, 200);
      // Now the peer reads: every call it made is answered, none lost.
      peer.stdin?.write('read\n');
      const answered = await lineOf(peer, (l) => l.startsWith('answered'));
      const end = statusKiB(pid, 'VmRSS');
      console.log(
        `[reliability] ${PINGS} pings without reading the answers${asDeployed ? ' (manager under its unit, API and peer as nobody in the group)' : ''}: ` +
          `first ${first}; manager RSS ${before} KiB, +${grown} KiB while unread, ${end} KiB once read; ${answered}`,
      );
      assert.equal(first, 'paused', 'the manager stopped reading from the peer');
      assert.ok(grown < 32 * 1024, `the manager grew by ${grown} KiB under the flood`);
      assert.equal(answered, `answered ${PINGS}`);
    } finally {
      peer.kill('SIGKILL');
    }
  });

  it('case 5: a mutation too long for the socket is a 413; the calls beside it are answered as they went', {
    timeout: 120_000,
  }, async () => {
    const root = await createRootToken(d, 'sized');
    // 64.8 KB of JSON: within the API's body limit, longer than a socket line once forwarded.
    const users = Array.from({ length: 6480 }, (_, i) => `u${i}@pve`.padEnd(9, 'x')).join(',');
    const big = { path: '/', roles: 'PVEAuditor', users };
    assert.ok(JSON.stringify(big).length > 64_000 && JSON.stringify(big).length < 65_536);
    const names = Array.from({ length: 16 }, (_, i) => `c${i}`);
    const create = (name: string) =>
      call(api, 'POST', `/access/users/root@pam/token/${name}`, {
        auth: root.header,
        form: { privsep: 1 },
      });
    const firstHalf = names.slice(0, 8).map(create);
    const oversized = call(api, 'PUT', '/access/acl', { auth: root.header, json: big });
    const secondHalf = names.slice(8).map(create);
    const replies = await Promise.all([...firstHalf, ...secondHalf]);
    const refused = await oversized;
    const listed = await call(api, 'GET', '/access/users/root@pam/token', { auth: root.header });
    const exists = new Set((listed.body.data as Array<{ tokenid: string }>).map((t) => t.tokenid));
    const statuses = replies.map((r) => r.status);
    console.log(
      `[reliability] a 64.8 KB mutation among 16 token creations on one connection: it got ${refused.status}; the creations got ${statuses.join(' ')}`,
    );
    assert.equal(refused.status, 413, refused.raw);
    for (const [i, name] of names.entries()) {
      const reply = replies[i];
      // Whatever the answer, it tells the truth about the change.
      assert.equal(reply?.status === 200, exists.has(name), `${name}: ${reply?.raw}`);
      assert.equal(reply?.status, 200, `${name}: ${reply?.raw}`);
    }
  });

  it('case 5: a peer that sends a line too long still gets the answers to the calls before it', async () => {
    const token = await createRootToken(d, 'peer');
    const request = (id: number, tokenName: string) =>
      JSON.stringify({
        id,
        op: 'token.create',
        credential: token.header,
        params: { userid: 'root@pam', tokenName, fields: { privsep: true } },
      });
    // Two mutations, then a line longer than the socket takes, in one write.
    const text = `${request(1, 'p1')}\n${request(2, 'p2')}\n${'x'.repeat(70 * 1024)}\n`;
    const answers = await new Promise<string[]>((resolve, reject) => {
      const socket = net.createConnection(socketPath, () => socket.write(text));
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        received += chunk;
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(received.split('\n').filter((l) => l !== '')));
      socket.setTimeout(30_000, () =>
        reject(new Error('the manager neither answered nor hung up')),
      );
    });
    const listed = await call(api, 'GET', '/access/users/root@pam/token', { auth: token.header });
    const exists = new Set((listed.body.data as Array<{ tokenid: string }>).map((t) => t.tokenid));
    console.log(
      `[reliability] two mutations then a 70 KiB line on one connection: ${answers.length} answers before the hang-up; applied: ${['p1', 'p2'].filter((n) => exists.has(n)).join(', ') || 'none'}`,
    );
    assert.deepEqual(
      answers.map((line) => (JSON.parse(line) as { id: number; ok: boolean }).ok),
      [true, true],
    );
    assert.ok(exists.has('p1') && exists.has('p2'));
  });
});
