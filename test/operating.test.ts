/**
 * Operating the daemons, with real processes: health and readiness on the
 * metrics listener, readiness following the manager, SIGHUP reloading the
 * certificate and the settings file with a rolling restart under load (a real
 * HTTP client, keep-alive connections, no request may fail), a reload that is
 * refused, and the default metrics.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import selfsigned from 'selfsigned';
import { Agent, request } from 'undici';
import {
  type Api,
  alive,
  type Deployment,
  pveHeader,
  startDeployment,
} from '../harness/daemons.js';
import { ensureCertificate } from '../src/daemon/tls.js';
import { GenerationPage } from '../src/generations/page.js';
import { Slot } from '../src/generations/slots.js';
import { tempDir } from './helpers/tmp.js';

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
function workerPids(api: Api): number[] {
  return api.log.lines.filter((l) => l.msg === 'worker listening').map((l) => Number(l.worker));
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

/** A manager and an API of two workers with its metrics listener. */
async function startPair(dir: string): Promise<{ deployment: Deployment; api: Api; port: number }> {
  const deployment = await startDeployment(dir);
  const api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1'], {
    metrics: true,
  });
  return { deployment, api, port: api.metricsPort as number };
}

describe('health and readiness on the metrics listener', () => {
  let deployment: Deployment;
  let api: Api;
  let port: number;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  before(async () => {
    ({ deployment, api, port } = await startPair(dir));
  });
  after(() => deployment?.stop());

  it('answers /livez, /readyz and /healthz with ok and nothing more, without authentication', async () => {
    for (const route of ['/livez', '/readyz', '/healthz', '/readyz?verbose=1']) {
      const reply = await probe(port, route);
      assert.deepEqual(reply, { status: 200, body: 'ok\n' }, route);
    }
    assert.equal((await probe(port, '/readyz', 'HEAD')).status, 200);
    assert.equal((await probe(port, '/readyz', 'POST')).status, 405);
    assert.equal((await probe(port, '/ready')).status, 404);
  });

  it('turns not ready while user.cfg is missing, ready again when it is back', async () => {
    const userCfg = path.join(dir, 'etc', 'user.cfg');
    renameSync(userCfg, `${userCfg}.away`);
    try {
      assert.deepEqual(await probe(port, '/readyz'), { status: 503, body: 'not ready\n' });
      await api.log.waitFor((l) => l.msg === 'not ready' && String(l.failing) === 'config');
    } finally {
      renameSync(`${userCfg}.away`, userCfg);
    }
    assert.deepEqual(await probe(port, '/readyz'), { status: 200, body: 'ok\n' });
  });

  it('turns not ready while this host is fenced (several hosts), ready again without a fence', async () => {
    const page = GenerationPage.open(path.join(dir, 'run', 'shmem', 'config-versions'), {
      create: false,
    });
    try {
      page.store(Slot.FENCE, 1);
      assert.deepEqual(await probe(port, '/readyz'), { status: 503, body: 'not ready\n' });
      await api.log.waitFor((l) => l.msg === 'not ready' && String(l.failing) === 'fence');
      page.store(Slot.FENCE, 0);
      assert.deepEqual(await probe(port, '/readyz'), { status: 200, body: 'ok\n' });
    } finally {
      page.store(Slot.FENCE, 0);
      page.close();
    }
  });

  it('turns not ready when the manager stops, and ready again when it is back', async () => {
    deployment.manager.kill('SIGTERM');
    await once(deployment.manager, 'exit');
    assert.deepEqual(await probe(port, '/readyz'), { status: 503, body: 'not ready\n' });
    assert.equal((await probe(port, '/healthz')).status, 503);
    // Liveness is about the API itself: still 200.
    assert.equal((await probe(port, '/livez')).status, 200);
    await api.log.waitFor((l) => l.msg === 'not ready' && String(l.failing) === 'manager');

    // A new manager on the same directories, as systemd would restart it.
    const again = await startDeployment(dir);
    try {
      assert.deepEqual(await probe(port, '/readyz'), { status: 200, body: 'ok\n' });
      // Without the page the workers would hash every request: not ready either.
      rmSync(path.join(dir, 'run', 'shmem', 'config-versions'));
      assert.deepEqual(await probe(port, '/readyz'), { status: 503, body: 'not ready\n' });
      await api.log.waitFor((l) => l.msg === 'not ready' && String(l.failing) === 'page');
    } finally {
      await again.stop();
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
    // A limit is per process: the daemons inherit this process's, which a sum would triple.
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    assert.match(text, new RegExp(`^process_max_fds ${limit}$`, 'm'));
    const open = Number(/^process_open_fds (\d+)$/m.exec(text)?.[1]);
    assert.ok(open > 0 && open < Number(limit), `open fds ${open}: the busiest process's`);
  });
});

describe('SIGHUP: reload with a rolling restart', () => {
  let deployment: Deployment;
  let api: Api;
  let port: number;
  let header: string;
  /** The certificate clients trust: the renewed one after the first test. */
  let ca: Buffer;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  before(async () => {
    ({ deployment, api, port } = await startPair(dir));
    ca = api.ca;
    const created = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'load',
      fields: { privsep: false },
    });
    assert.equal(created.ok, true, JSON.stringify(created));
    header = pveHeader('root@pam!load', (created.data as { value: string }).value);
  });
  after(() => deployment?.stop());

  it('renews the certificate and replaces every worker while a keep-alive client loses no request', async () => {
    const oldCa = api.ca;
    const newCa = await renewCertificate(dir);
    const { X509Certificate } = await import('node:crypto');
    const newFingerprint = new X509Certificate(newCa).fingerprint256;
    const oldPids = workerPids(api);
    assert.equal(oldPids.length, 2);

    const agent = new Agent({ connect: { ca: [oldCa, newCa] }, connections: 8 });
    const url = `${api.url}/version`;
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
    api.child.kill('SIGHUP');
    const done = await api.log.waitFor((l) => l.msg === 'reload done' || l.msg === 'reload failed');
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
    const newPids = workerPids(api).slice(2);
    assert.equal(newPids.length, 2);
    for (const pid of oldPids) {
      assert.ok(!newPids.includes(pid));
      assert.equal(alive(pid), false, `old worker ${pid} still runs`);
    }
    assert.equal(await servedFingerprint(url, [newCa]), newFingerprint);
    ca = newCa;
  });

  it('applies the settings file on reload and refuses a broken certificate, keeping the workers', async () => {
    // The harness gives --workers and --hash-threads on the command line, which win; these do not.
    writeFileSync(path.join(dir, 'etc', 'api.json'), JSON.stringify({ ttlMs: 1234, hashQueue: 7 }));
    const seen = api.log.lines.length;
    api.child.kill('SIGHUP');
    const reloaded = await api.log.waitFor(
      (l) =>
        api.log.lines.indexOf(l) >= seen && (l.msg === 'reload done' || l.msg === 'reload failed'),
    );
    assert.equal(reloaded.msg, 'reload done');
    const fresh = workerPids(api).slice(-2);
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
    renameSync(path.join(other, 'k.pem'), path.join(dir, 'etc', 'api-ssl.key'));
    const pids = workerPids(api).length;
    const mark = api.log.lines.length;
    api.child.kill('SIGHUP');
    const refused = await api.log.waitFor(
      (l) =>
        api.log.lines.indexOf(l) >= mark && (l.msg === 'reload done' || l.msg === 'reload failed'),
    );
    assert.equal(refused.msg, 'reload failed');
    assert.match(String(refused.err), /is not the key of/);
    assert.equal(workerPids(api).length, pids, 'a worker was restarted');
    const metrics = (await probe(port, '/metrics')).body;
    assert.match(metrics, /^token_shadow_reloads_total\{outcome="failed"\} 1$/m);
    assert.match(metrics, /^token_shadow_reloads_total\{outcome="ok"\} 2$/m);
    const res = await request(`${api.url}/version`, {
      dispatcher: new Agent({ connect: { ca } }),
      headers: { authorization: header },
    });
    await res.body.text();
    assert.equal(res.statusCode, 200);
  });
});
