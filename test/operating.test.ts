/**
 * Operating the daemons, with real processes: health and readiness on the
 * metrics listener, readiness following the manager, SIGHUP reloading the
 * certificate and the settings file with a rolling restart under load (a real
 * HTTP client, keep-alive connections, no request may fail), a reload that is
 * refused, and the default metrics.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import selfsigned from 'selfsigned';
import { Agent, request } from 'undici';
import { ensureCertificate } from '../src/daemon/tls.js';
import { type Daemons, pveHeader, spawnDaemon, startDaemons } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

/** A port that was free a moment ago (the metrics listener needs a fixed one). */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** GET on the metrics listener: status and body. */
export function probe(
  port: number,
  route: string,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: route, method, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The fingerprint of the certificate a new connection to `url` is served. */
function servedFingerprint(url: string, ca: Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(url), { ca, agent: false }, (res) => {
      const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
        .fingerprint256;
      res.resume();
      res.on('end', () => resolve(fingerprint));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Workers the primary reported listening, by pid, in order. */
function workerPids(d: Daemons): number[] {
  return d.apiLog.lines.filter((l) => l.msg === 'worker listening').map((l) => Number(l.worker));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces the deployment's certificate with a new self-signed one; returns
 * it. Another subject than the first, so that a client trusting both finds
 * the right one by name.
 */
async function renewCertificate(dir: string): Promise<Buffer> {
  const etc = path.join(dir, 'etc');
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'renewed.test' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  const fresh = tempDir('token-shadow-cert-');
  writeFileSync(path.join(fresh, 'key.pem'), pems.private, { mode: 0o600 });
  writeFileSync(path.join(fresh, 'cert.pem'), pems.cert);
  // Between the renames the pair does not match: a reload then would fail and change nothing.
  renameSync(path.join(fresh, 'key.pem'), path.join(etc, 'api-ssl.key'));
  renameSync(path.join(fresh, 'cert.pem'), path.join(etc, 'api-ssl.pem'));
  return readFileSync(path.join(etc, 'api-ssl.pem'));
}

describe('health and readiness on the metrics listener', () => {
  let d: Daemons;
  let port: number;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  before(async () => {
    port = await freePort();
    d = await startDaemons(dir, ['--metrics-port', String(port)]);
  });
  after(() => d?.stop());

  it('answers /livez, /readyz and /healthz with ok and nothing more, without authentication', async () => {
    for (const route of ['/livez', '/readyz', '/healthz', '/readyz?verbose=1']) {
      const reply = await probe(port, route);
      assert.deepEqual(reply, { status: 200, body: 'ok\n' }, route);
    }
    assert.equal((await probe(port, '/readyz', 'HEAD')).status, 200);
    assert.equal((await probe(port, '/readyz', 'POST')).status, 405);
    assert.equal((await probe(port, '/ready')).status, 404);
  });

  it('turns not ready when the manager stops, and ready again when it is back', async () => {
    d.manager.kill('SIGTERM');
    await once(d.manager, 'exit');
    assert.deepEqual(await probe(port, '/readyz'), { status: 503, body: 'not ready\n' });
    assert.equal((await probe(port, '/healthz')).status, 503);
    // Liveness is about the API itself: still 200.
    assert.equal((await probe(port, '/livez')).status, 200);
    await d.apiLog.waitFor((l) => l.msg === 'not ready' && String(l.failing) === 'manager');

    const { child: manager, log: managerLog } = spawnDaemon('manager', dir);
    try {
      await managerLog.waitFor((l) => l.msg === 'manager ready');
      assert.deepEqual(await probe(port, '/readyz'), { status: 200, body: 'ok\n' });
    } finally {
      manager.kill('SIGTERM');
      await once(manager, 'exit');
    }
  });

  it('serves prom-client default metrics summed over the workers, and build_info', async () => {
    const text = (await probe(port, '/metrics')).body;
    assert.match(
      text,
      /^token_shadow_build_info\{version="\d+\.\d+\.\d+[^"]*",nodejs_version="v\d+/m,
    );
    assert.match(text, /^process_cpu_user_seconds_total \d/m);
    assert.match(text, /^nodejs_eventloop_lag_seconds \d/m);
    assert.match(text, /^token_shadow_api_workers 2$/m);
    assert.match(text, /^token_shadow_tls_certificate_not_after_seconds \d{10}/m);
    const rss = Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
    // Three processes (primary and two workers) of at least 20 MB each.
    assert.ok(rss > 3 * 20e6, `resident memory ${rss} is not a sum`);
  });
});

describe('SIGHUP: reload with a rolling restart', () => {
  let d: Daemons;
  let port: number;
  let header: string;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  before(async () => {
    port = await freePort();
    d = await startDaemons(dir, ['--metrics-port', String(port)]);
    const created = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'load',
      fields: { privsep: false },
    });
    assert.equal(created.ok, true, JSON.stringify(created));
    header = pveHeader('root@pam!load', (created.data as { value: string }).value);
  });
  after(() => d?.stop());

  it('renews the certificate and replaces every worker while a keep-alive client loses no request', async () => {
    const oldCa = d.ca;
    const newCa = await renewCertificate(d.dir);
    const { X509Certificate } = await import('node:crypto');
    const newFingerprint = new X509Certificate(newCa).fingerprint256;
    const oldPids = workerPids(d);
    assert.equal(oldPids.length, 2);

    const agent = new Agent({ connect: { ca: [oldCa, newCa] }, connections: 8 });
    const url = `${d.url}/version`;
    const statuses = new Map<number, number>();
    const errors: string[] = [];
    let running = true;
    let duringReload = 0;
    let reloading = false;
    const loop = async () => {
      while (running) {
        try {
          const res = await request(url, { dispatcher: agent, headers: { authorization: header } });
          await res.body.text();
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (reloading) duringReload++;
        } catch (error) {
          errors.push(String(error));
        }
      }
    };
    const loops = Array.from({ length: 8 }, loop);
    // Load is flowing before the signal.
    while ((statuses.get(200) ?? 0) < 200 && errors.length === 0) await new Promise(setImmediate);

    reloading = true;
    d.api.kill('SIGHUP');
    const done = await d.apiLog.waitFor(
      (l) => l.msg === 'reload done' || l.msg === 'reload failed',
    );
    reloading = false;
    // Some more load after the reload, on the new workers.
    const before = statuses.get(200) ?? 0;
    while ((statuses.get(200) ?? 0) < before + 200 && errors.length === 0) {
      await new Promise(setImmediate);
    }
    running = false;
    await Promise.all(loops);
    await agent.close();

    assert.equal(done.msg, 'reload done');
    assert.deepEqual(errors, []);
    assert.deepEqual([...statuses.keys()], [200]);
    assert.ok(duringReload > 0, 'no request was served during the reload');
    const newPids = workerPids(d).slice(2);
    assert.equal(newPids.length, 2);
    for (const pid of oldPids) {
      assert.ok(!newPids.includes(pid));
      assert.equal(alive(pid), false, `old worker ${pid} still runs`);
    }
    assert.equal(await servedFingerprint(url, [newCa]), newFingerprint);
    d.ca = newCa;
  });

  it('applies the settings file on reload and refuses a broken certificate, keeping the workers', async () => {
    // The harness gives --workers and --hash-threads on the command line, which win; these do not.
    writeFileSync(
      path.join(d.dir, 'etc', 'api.json'),
      JSON.stringify({ ttlMs: 1234, hashQueue: 7 }),
    );
    const seen = d.apiLog.lines.length;
    d.api.kill('SIGHUP');
    const reloaded = await d.apiLog.waitFor(
      (l) =>
        d.apiLog.lines.indexOf(l) >= seen && (l.msg === 'reload done' || l.msg === 'reload failed'),
    );
    assert.equal(reloaded.msg, 'reload done');
    const fresh = workerPids(d).slice(-2);
    for (const pid of fresh) {
      // What the new worker runs with, read from its environment.
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const envelope = environ.find((e) => e.startsWith('TOKEN_SHADOW_WORKER='));
      const { settings } = JSON.parse(envelope?.slice('TOKEN_SHADOW_WORKER='.length) ?? '{}');
      assert.equal(settings.ttlMs, 1234);
      assert.equal(settings.hashQueue, 7);
      assert.equal(settings.hashThreads, 1);
    }

    // A key that is not the certificate's: the reload fails in the primary, nothing restarts.
    const other = tempDir('token-shadow-cert-');
    await ensureCertificate(path.join(other, 'c.pem'), path.join(other, 'k.pem'));
    renameSync(path.join(other, 'k.pem'), path.join(d.dir, 'etc', 'api-ssl.key'));
    const pids = workerPids(d).length;
    const mark = d.apiLog.lines.length;
    d.api.kill('SIGHUP');
    const refused = await d.apiLog.waitFor(
      (l) =>
        d.apiLog.lines.indexOf(l) >= mark && (l.msg === 'reload done' || l.msg === 'reload failed'),
    );
    assert.equal(refused.msg, 'reload failed');
    assert.match(String(refused.err), /is not the key of/);
    assert.equal(workerPids(d).length, pids, 'a worker was restarted');
    const metrics = (await probe(port, '/metrics')).body;
    assert.match(metrics, /^token_shadow_reloads_total\{outcome="failed"\} 1$/m);
    assert.match(metrics, /^token_shadow_reloads_total\{outcome="ok"\} 2$/m);
    const res = await request(`${d.url}/version`, {
      dispatcher: new Agent({ connect: { ca: d.ca } }),
      headers: { authorization: header },
    });
    await res.body.text();
    assert.equal(res.statusCode, 200);
  });
});
