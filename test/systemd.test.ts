/**
 * What the daemons say to systemd, with real processes: readiness, reload and
 * stop through a NOTIFY_SOCKET this test binds (a datagram socket, which Node
 * cannot open, hence a small python3 listener), journald priorities when
 * stdout is the journal stream, and the dual-stack default with its IPv4
 * fallback on a kernel without IPv6 (imitated by an LD_PRELOAD shim).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, closeSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { type Api, pveHeader, startDeployment } from '../harness/daemons.js';
import { fixture } from './helpers/children.js';
import { tempDir } from './helpers/tmp.js';

function missing(tool: string, args: string[]): string | false {
  const result = spawnSync(tool, args, { encoding: 'utf8' });
  return result.error || result.status !== 0 ? `${tool} is not available` : false;
}

const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    # Without room for ancillary data the kernel closes passed descriptors,
    # which releases systemd-notify's barrier as systemd would.
    print(s.recv(65536).decode().replace("\\n", " ").strip(), flush=True)
`;

/** A bound NOTIFY_SOCKET: every datagram as one line. */
async function notifySocket(dir: string) {
  const socketPath = path.join(dir, 'notify.sock');
  const child = spawn('python3', ['-c', LISTENER, socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  await new Promise<void>((resolve, reject) => {
    lines.once('line', (line) => (line === 'bound' ? resolve() : reject(new Error(line))));
    child.once('exit', (code) => reject(new Error(`listener exited (${code})`)));
  });
  lines.on('line', (line) => {
    messages.push(line);
    for (const w of waiters.splice(0)) w();
  });
  return {
    socketPath,
    messages,
    /** Resolves with the first message matching, already received or to come. */
    async waitFor(match: (m: string) => boolean): Promise<string> {
      for (;;) {
        const found = messages.find(match);
        if (found !== undefined) return found;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    stop(): void {
      child.kill();
    },
  };
}

describe('Type=notify through systemd-notify', {
  skip: missing('systemd-notify', ['--version']) || missing('python3', ['--version']),
}, () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);

  it('reports ready once serving, reloading then ready on SIGHUP, and stopping', async () => {
    const listener = await notifySocket(dir);
    after(() => listener.stop());
    const deployment = await startDeployment(dir, { env: { NOTIFY_SOCKET: listener.socketPath } });
    let api: Api | undefined;
    try {
      api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
      const d = { manager: deployment.manager, api: api.child, apiLog: api.log };
      const from = (child: ChildProcess) => (m: string) => m.includes(`MAINPID=${child.pid}`);
      const managerReady = await listener.waitFor(
        (m) => from(d.manager)(m) && m.includes('READY=1'),
      );
      assert.match(managerReady, /STATUS=serving/);
      const apiReady = await listener.waitFor((m) => from(d.api)(m) && m.includes('READY=1'));
      assert.match(apiReady, /STATUS=serving on 127\.0\.0\.1:\d+/);

      const seen = listener.messages.length;
      d.api.kill('SIGHUP');
      await d.apiLog.waitFor((l) => l.msg === 'reload done');
      const after = () => listener.messages.slice(seen).filter(from(d.api));
      await listener.waitFor((m) => after().includes(m) && m.includes('READY=1'));
      const sequence = after();
      assert.match(sequence[0] ?? '', /RELOADING=1 MONOTONIC_USEC=\d+/);
      assert.match(sequence.at(-1) ?? '', /READY=1/);
    } finally {
      await deployment.stop();
    }
    await listener.waitFor(
      (m) => m.includes(`MAINPID=${api?.primaryPid}`) && m.includes('STOPPING=1'),
    );
  });
});

describe('journald priorities', () => {
  const dir = tempDir();

  /** Runs the fixture with stdout on a file; `journal` names that file as JOURNAL_STREAM. */
  async function levels(journal: boolean): Promise<string[]> {
    const file = path.join(dir, `out-${journal}.log`);
    writeFileSync(file, '');
    const fd = openSync(file, 'a');
    const st = fstatSync(fd);
    const child = spawn(process.execPath, [fixture('log-levels')], {
      stdio: ['ignore', fd, 'inherit'],
      env: { ...process.env, JOURNAL_STREAM: journal ? `${st.dev}:${st.ino}` : `${st.dev}:1` },
    });
    await once(child, 'close');
    closeSync(fd);
    return readFileSync(file, 'utf8').trim().split('\n');
  }

  it('prefixes each line with its syslog priority when stdout is the journal stream', async () => {
    const lines = await levels(true);
    assert.deepEqual(
      // Sorted: pino's asynchronous stdout may write its first line last (seen with files).
      lines
        .map((l) => /^<(\d)>\{"level":(\d+)/.exec(l)?.slice(1))
        .sort((a, b) => Number(a?.[1]) - Number(b?.[1])),
      [
        ['7', '10'],
        ['7', '20'],
        ['6', '30'],
        ['4', '40'],
        ['3', '50'],
        ['2', '60'],
      ],
    );
    // The rest of the line is the usual JSON.
    const error = lines.find((l) => l.startsWith('<3>')) as string;
    assert.equal(JSON.parse(error.slice(3)).msg, 'error line');
  });

  it('writes plain JSON lines when stdout is something else', async () => {
    const lines = await levels(false);
    assert.equal(lines.length, 6);
    for (const line of lines) assert.equal(typeof JSON.parse(line).level, 'number');
  });
});

/** A manager and an API of one worker on the API's default address. */
async function apiOnDefaultHost(dir: string, env: Record<string, string> = {}) {
  const deployment = await startDeployment(dir, { env });
  const api = await deployment
    .startApi('api', ['--workers', '1'], { host: null })
    .catch(async (error) => {
      await deployment.stop();
      throw error;
    });
  const ready = await api.log.waitFor((l) => l.msg === 'api ready');
  return { ready, log: api.log, ca: api.ca, stop: () => deployment.stop() };
}

function statusOver(host: string, port: number, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host, port, path: '/api2/json/version', ca, servername: 'localhost', agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.setHeader(
      'authorization',
      pveHeader('nobody@pve!x', '00000000-0000-0000-0000-000000000000'),
    );
    req.on('error', reject);
    req.end();
  });
}

describe('listening address', () => {
  it('defaults to dual-stack :: and answers on 127.0.0.1 and ::1', async () => {
    const dir = tempDir();
    const api = await apiOnDefaultHost(dir);
    try {
      assert.equal(api.ready.host, '::');
      const { ca } = api;
      const port = Number(api.ready.port);
      assert.equal(await statusOver('127.0.0.1', port, ca), 401);
      assert.equal(await statusOver('::1', port, ca), 401);
    } finally {
      await api.stop();
    }
  });

  it('falls back to 0.0.0.0 when the kernel has no IPv6', {
    skip: missing('cc', ['--version']),
  }, async () => {
    const dir = tempDir();
    const source = path.join(dir, 'no-ipv6.c');
    const shim = path.join(dir, 'no-ipv6.so');
    // What socket(AF_INET6, ...) does on a kernel booted with ipv6.disable=1.
    writeFileSync(
      source,
      `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>
int socket(int domain, int type, int protocol) {
  static int (*real)(int, int, int);
  if (domain == AF_INET6) { errno = EAFNOSUPPORT; return -1; }
  if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  return real(domain, type, protocol);
}
`,
    );
    const built = spawnSync('cc', ['-shared', '-fPIC', '-o', shim, source, '-ldl'], {
      encoding: 'utf8',
    });
    assert.equal(built.status, 0, built.stderr);
    const api = await apiOnDefaultHost(dir, { LD_PRELOAD: shim });
    try {
      assert.equal(api.ready.host, '0.0.0.0');
      const fallback = await api.log.waitFor((l) => l.msg === 'listening on IPv4 only');
      assert.match(String(fallback.reason), /EAFNOSUPPORT/);
      const { ca } = api;
      assert.equal(await statusOver('127.0.0.1', Number(api.ready.port), ca), 401);
    } finally {
      await api.stop();
    }
  });
});
