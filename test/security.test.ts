/**
 * Issue 10 against real daemons: what an attacker tried, each as a test that
 * failed before its fix. Cases 1 and 7 have their own files (page-swaps,
 * cut-lines).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { call, type Daemons, pipeLog, pveHeader, startDaemons } from '../harness/daemons.js';
import { RpcClient, relayedError } from '../src/daemon/rpc.js';
import { errorCode, httpFailureOf } from '../src/http/status.js';
import { rootCredential } from '../src/service/bootstrap.js';
import { callExpecting, createRootToken } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

const run = promisify(execFile);
const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));
const API = fileURLToPath(new URL('../src/daemon/api.js', import.meta.url));

/** One raw HTTP/1.1 request over TLS, headers exactly as given; resolves with the status. */
function rawRequest(d: Daemons, lines: string[]): Promise<number> {
  const url = new URL(d.url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: d.ca }, () => {
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      text += chunk;
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match) {
        resolve(Number(match[1]));
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

describe('security against real daemons (issue 10)', () => {
  let d: Daemons;
  let root: { id: string; secret: string; header: string };
  const dir = tempDir();
  chmodSync(dir, 0o755);

  before(async () => {
    d = await startDaemons(dir);
    root = await createRootToken(d, 'sec');
  });
  after(() => d?.stop());

  it('case 6: two Authorization headers get 401, whichever comes first', async () => {
    const host = `Host: ${new URL(d.url).host}`;
    const get = 'GET /api2/json/version HTTP/1.1';
    assert.equal(await rawRequest(d, [get, host, `Authorization: ${root.header}`]), 200);
    assert.equal(
      await rawRequest(d, [get, host, `Authorization: ${root.header}`, 'Authorization: x']),
      401,
    );
    assert.equal(
      await rawRequest(d, [get, host, 'authorization: x', `AUTHORIZATION: ${root.header}`]),
      401,
    );
    assert.equal(
      await rawRequest(d, [
        get,
        host,
        `Authorization: ${root.header}`,
        `Authorization: ${root.header}`,
      ]),
      401,
      'even the same value twice',
    );
    assert.equal((await call(d, 'GET', '/version', { auth: root.header })).status, 200);
  });
});

/** One line to the manager's socket, as any peer could send it; resolves with the parsed reply. */
function rawRpc(socketPath: string, line: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath, () => socket.write(`${line}\n`));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl !== -1) {
        resolve(JSON.parse(text.slice(0, nl)));
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

/** The manager's resident set, from /proc. */
function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1]);
}

/** Writes `total` bytes without a newline; resolves with how many were written before the peer hung up. */
function flood(socketPath: string, total: number): Promise<{ written: number; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let written = 0;
    let closed = false;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      resolve({ written, closed });
    });
    const pump = () => {
      while (written < total) {
        written += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      // Everything was accepted: the manager is still reading (and buffering) it.
      socket.end();
      socket.once('finish', () => resolve({ written, closed }));
    };
    socket.once('connect', pump);
  });
}

describe('the manager trusts nobody (issue 10, cases 2, 3, 4, 5)', () => {
  let d: Daemons;
  let root: string;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const socketPath = path.join(dir, 'run', 'manager.sock');
  const tokens = async (userid: string) =>
    (
      (await call(d, 'GET', `/access/users/${userid}/token`, { auth: root })).body.data as Array<{
        tokenid: string;
      }>
    ).map((t) => t.tokenid);

  before(async () => {
    d = await startDaemons(dir);
    const created = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'boss',
      fields: { privsep: false },
    });
    root = pveHeader('root@pam!boss', (created.data as { value: string }).value);
  });
  after(() => d?.stop());

  it('case 2: a peer naming an identity without a credential gets 401, and nothing changes', async () => {
    const evil = {
      id: 1,
      op: 'token.create',
      identity: 'root@pam',
      params: { userid: 'root@pam', tokenName: 'evil', fields: { privsep: false } },
    };
    const bare = await rawRpc(socketPath, JSON.stringify(evil));
    assert.equal(bare.status, 401, JSON.stringify(bare));
    const forged = await rawRpc(
      socketPath,
      JSON.stringify({ ...evil, credential: 'PVEAPIToken=root@pam!boss=not-the-secret' }),
    );
    assert.equal(forged.status, 401, JSON.stringify(forged));
    assert.equal((await tokens('root@pam')).includes('evil'), false, 'no token was made');
    // A real credential of a weaker caller acts as that caller, whatever identity is named.
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'low@pve' } });
    const low = await call(d, 'POST', '/access/users/low@pve/token/t', {
      auth: root,
      form: { privsep: 0 },
    });
    const lowHeader = pveHeader('low@pve!t', (low.body.data as { value: string }).value);
    const asLow = await rawRpc(socketPath, JSON.stringify({ ...evil, credential: lowHeader }));
    assert.equal(asLow.status, 403, JSON.stringify(asLow));
    assert.equal((await tokens('root@pam')).includes('evil'), false);
    const line = d.managerLog.lines.find((l) => l.msg === 'mutation' && l.status === 403);
    assert.equal(line?.identity, 'low@pve!t', 'the log names the derived identity');
  });

  it("the manager's domain errors reach a worker with their kind, status and message unchanged", async () => {
    const created = await call(d, 'POST', '/access/users/root@pam/token/relay', { auth: root });
    const rootHeader = pveHeader('root@pam!relay', (created.body.data as { value: string }).value);
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'weak@pve' } });
    const weak = await call(d, 'POST', '/access/users/weak@pve/token/t', { auth: root });
    const weakHeader = pveHeader('weak@pve!t', (weak.body.data as { value: string }).value);
    const rpc = new RpcClient(socketPath);
    try {
      const cases = [
        // A privilege the caller lacks: PermissionError, 403.
        {
          answer: await rpc.call('user.create', weakHeader, { userid: 'other@pve' }),
          failure: {
            status: 403,
            message: 'Permission check failed (/access/groups, User.Modify)',
          },
          code: 'ERR_PERMISSION',
        },
        // A malformed parameter: ParameterError, 400 with the parameter named.
        {
          answer: await rpc.call('user.create', rootHeader, { userid: 7 }),
          failure: {
            status: 400,
            message: 'userid must be a string',
            errors: { userid: 'invalid' },
          },
          code: 'ERR_PARAMETER',
        },
      ];
      for (const { answer, failure, code } of cases) {
        assert.equal(answer.ok, false, JSON.stringify(answer));
        if (answer.ok) continue;
        const relayed = relayedError(answer);
        assert.deepEqual(httpFailureOf(relayed), failure);
        assert.equal(errorCode(relayed), code);
      }
    } finally {
      rpc.close();
    }
  });

  it('case 3: a line without end is cut off at the limit, not buffered', async () => {
    const pid = d.manager.pid as number;
    const before = rssKiB(pid);
    const { written, closed } = await flood(socketPath, 256 * 1024 * 1024);
    const after = rssKiB(pid);
    console.log(
      `[reliability] a 256 MiB line without newline: the manager hung up after ${written >> 10} KiB were written; RSS ${before} KiB -> ${after} KiB`,
    );
    assert.equal(closed, true, 'the manager hung up');
    assert.ok(written < 64 * 1024 * 1024, `${written} bytes went in before the hang-up`);
    assert.ok(after - before < 32 * 1024, `RSS grew by ${after - before} KiB`);
    // Still serving.
    assert.equal((await call(d, 'GET', '/version', { auth: root })).status, 200);
    const ok = await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'x@pve' } });
    assert.equal(ok.status, 200, ok.raw);
  });

  it('case 4: User.Modify on /access does not reach root@pam, its tokens or its groups', async () => {
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'ua@pve' } });
    const grant = await call(d, 'PUT', '/access/acl', {
      auth: root,
      form: { path: '/access', users: 'ua@pve', roles: 'PVEUserAdmin' },
    });
    assert.equal(grant.status, 200, grant.raw);
    const t = await call(d, 'POST', '/access/users/ua@pve/token/full', {
      auth: root,
      form: { privsep: 0 },
    });
    const ua = pveHeader('ua@pve!full', (t.body.data as { value: string }).value);
    await callExpecting(403, d, 'POST', '/access/users/root@pam/token/x', {
      auth: ua,
      form: { privsep: 0 },
    });
    await callExpecting(403, d, 'PUT', '/access/users/root@pam', { auth: ua, form: { enable: 0 } });
    await callExpecting(403, d, 'PUT', '/access/users/root@pam', {
      auth: ua,
      form: { groups: '' },
    });
    await callExpecting(403, d, 'DELETE', '/access/users/root@pam/token/boss', { auth: ua });
    assert.equal(
      (await call(d, 'GET', '/version', { auth: root })).status,
      200,
      'root still works',
    );
    // PVE's semantics otherwise: the user admin manages other users and their tokens.
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'other@pve' } });
    const other = await call(d, 'POST', '/access/users/other@pve/token/ci', {
      auth: ua,
      form: { privsep: 0 },
    });
    assert.equal(other.status, 200, other.raw);
  });

  it('case 4: a token with privilege separation never creates or lifts one without', async () => {
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'sep@pve' } });
    await call(d, 'PUT', '/access/acl', {
      auth: root,
      form: { path: '/access', users: 'sep@pve', roles: 'PVEUserAdmin' },
    });
    const made = await call(d, 'POST', '/access/users/sep@pve/token/s', {
      auth: root,
      form: { privsep: 1 },
    });
    await call(d, 'PUT', '/access/acl', {
      auth: root,
      form: { path: '/access', tokens: 'sep@pve!s', roles: 'PVEUserAdmin' },
    });
    const sep = pveHeader('sep@pve!s', (made.body.data as { value: string }).value);
    await callExpecting(403, d, 'POST', '/access/users/sep@pve/token/full', {
      auth: sep,
      form: { privsep: 0 },
    });
    await callExpecting(403, d, 'PUT', '/access/users/sep@pve/token/s', {
      auth: sep,
      form: { privsep: 0 },
    });
    await callExpecting(200, d, 'POST', '/access/users/sep@pve/token/sib', {
      auth: sep,
      form: { privsep: 1 },
    });
    // Nor a new secret for a token without separation (it would be the user's full power).
    await call(d, 'POST', '/access/users/sep@pve/token/wide', { auth: root, form: { privsep: 0 } });
    const rotate = await call(d, 'PUT', '/access/users/sep@pve/token/wide', {
      auth: sep,
      form: { regenerate: 1 },
    });
    assert.equal(rotate.status, 403, rotate.raw);
  });

  it('case 5: tokenctl, the host superuser, repairs a disabled root@pam', async () => {
    const ctl = (...args: string[]) =>
      run(process.execPath, [
        TOKENCTL,
        '--config-dir',
        path.join(dir, 'etc'),
        '--runtime-dir',
        path.join(dir, 'run'),
        ...args,
      ]);
    await ctl('user', 'update', 'root@pam', '--disable');
    assert.equal((await call(d, 'GET', '/version', { auth: root })).status, 401);
    await ctl('user', 'update', 'root@pam', '--enable');
    assert.equal((await call(d, 'GET', '/version', { auth: root })).status, 200);
    // Even with root@pam gone from every ACL and expired.
    await ctl('user', 'update', 'root@pam', '--expire', '1');
    await ctl('token', 'add', 'root@pam!repair', '--privsep', '0');
    await ctl('user', 'update', 'root@pam', '--expire', '0');
    assert.ok((await tokens('root@pam')).includes('repair'));
  });
});

describe('the API worker survives a broken manager (issue 10, case 3)', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  let fake: net.Server;
  let api: ChildProcess;
  let url: string;
  let header: string;
  let mode: 'garbage' | 'silent' = 'garbage';

  before(async () => {
    const etc = path.join(dir, 'etc');
    const runDir = path.join(dir, 'run');
    mkdirSync(runDir, { recursive: true });
    header = await rootCredential(etc, runDir)();
    fake = net.createServer((socket) => {
      socket.on('data', () => {
        if (mode === 'garbage') socket.write('this is not json\n');
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => fake.listen(path.join(runDir, 'manager.sock'), resolve));
    api = spawn(
      process.execPath,
      [
        API,
        '--config-dir',
        etc,
        '--runtime-dir',
        runDir,
        '--plain-http',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--metrics-port',
        '0',
        '--workers',
        '1',
        '--hash-threads',
        '1',
        '--rpc-deadline',
        '1000',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    url = String((await pipeLog(api, 'api', undefined).waitFor((l) => l.msg === 'api ready')).url);
  });
  after(async () => {
    api.kill('SIGTERM');
    await once(api, 'exit');
    fake.close();
  });

  const post = async () =>
    (
      await fetch(`${url}/access/users`, {
        method: 'POST',
        headers: { authorization: header, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'userid=new@pve',
      })
    ).status;
  const version = async () =>
    (await fetch(`${url}/version`, { headers: { authorization: header } })).status;

  it('a malformed reply is a 503, and the worker keeps serving', async () => {
    mode = 'garbage';
    assert.equal(await post(), 503);
    assert.equal(await version(), 200);
    assert.equal(await post(), 503);
  });

  it('a manager that never answers is a 503 at the deadline', async () => {
    mode = 'silent';
    const start = performance.now();
    assert.equal(await post(), 503);
    const waited = performance.now() - start;
    assert.ok(waited >= 900, `answered after ${waited} ms, before the deadline`);
    assert.equal(await version(), 200);
  });
});
