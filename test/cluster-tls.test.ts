/**
 * Multi-host mode against an etcd that requires client TLS and passwords, as
 * a production etcd would: a real 3-member etcd on loopback with https client
 * URLs, `--client-cert-auth` and a CA the test makes; authentication enabled
 * with a root user and a non-root user whose role grants read/write on
 * `/token-shadow/` only. `tokenctl cluster init` moves a host into it (the
 * password from a file, never on a command line or in cluster.json), the
 * host's manager syncs and its API verifies, revokes and refuses a token.
 * Each wrong setting (a wrong password, a user without a role on the prefix,
 * no client certificate, an untrusted CA) is a clear typed error from
 * tokenctl and a fenced host answering 503, never a crash; the password is in
 * no log line, error or file but its own.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { makeTestCa } from '../harness/certificates.js';
import { type Api, type Deployment, startDeployment } from '../harness/daemons.js';
import {
  type EtcdCluster,
  enableEtcdAuth,
  etcdUnavailable,
  startEtcdCluster,
} from '../harness/etcd.js';
import { tokenctlIn as tokenctl, versionStatus } from '../harness/tokenctl.js';
import { readClusterState } from '../src/cluster/admin.js';
import { createEtcdClient, readPasswordFile, withoutIpServerName } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { ClusterError } from '../src/errors.js';
import { tempDir } from './helpers/tmp.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# cluster TLS tests skipped: ${noEtcd}\n`);

const USER = 'token-shadow';
const API_ARGS = ['--plain-http', '--workers', '1', '--hash-threads', '1'];

/** A secret a test can search for: long, random, never a substring of anything else. */
function password(): string {
  return `pw-${randomBytes(16).toString('hex')}`;
}

describe('multi-host mode on an etcd with client TLS and passwords', {
  skip: noEtcd ?? false,
}, () => {
  let etcd: EtcdCluster;
  const root = tempDir('token-shadow-cluster-tls-');
  const secrets = { root: password(), user: password(), roleless: password(), wrong: password() };
  const files = {
    password: path.join(root, 'etcd-password'),
    wrong: path.join(root, 'etcd-password-wrong'),
    roleless: path.join(root, 'etcd-password-roleless'),
  };
  /** Every line the daemons wrote, stdout and stderr. */
  const transcript: string[] = [];
  /** Everything tokenctl printed. */
  const printed: string[] = [];
  /** Node's warnings in this process (tokenctl runs in it). */
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => {
    warnings.push(`${warning.code ?? warning.name}: ${warning.message}`);
  };
  process.on('warning', onWarning);
  const running: Deployment[] = [];
  let tlsArgs: string[];
  let header = '';
  let apiA: Api | undefined;

  const run = async (dir: string, ...args: string[]) => {
    const result = await tokenctl(dir, ...args);
    printed.push(result.stdout, result.stderr);
    return result;
  };
  const init = (dir: string, host: string, ...args: string[]) =>
    run(
      dir,
      'cluster',
      'init',
      '--endpoints',
      etcd.endpoints.join(','),
      '--name',
      'tls',
      '--host',
      host,
      ...args,
    );
  const deploy = async (dir: string) => {
    const deployment = await startDeployment(dir, { transcript });
    running.push(deployment);
    return deployment;
  };

  before(
    async () => {
      etcd = await startEtcdCluster({ tls: true });
      await enableEtcdAuth(etcd, secrets.root, [
        { name: USER, password: secrets.user, prefix: '/token-shadow/' },
        { name: 'elsewhere', password: secrets.roleless, prefix: '/elsewhere/' },
      ]);
      // As an operator writes them: one line, a newline at the end.
      writeFileSync(files.password, `${secrets.user}\n`, { mode: 0o600 });
      writeFileSync(files.wrong, `${secrets.wrong}\n`, { mode: 0o600 });
      writeFileSync(files.roleless, `${secrets.roleless}\n`, { mode: 0o600 });
      const tls = etcd.tls;
      assert.ok(tls);
      tlsArgs = ['--ca', tls.ca.caFile, '--cert', tls.client.cert, '--key', tls.client.key];
    },
    { timeout: 60_000 },
  );

  after(async () => {
    for (const d of running) await d.stop();
    await etcd?.stop();
    // Nothing anyone printed holds a password (the files hold them, and etcd).
    const everything = [...transcript, ...printed].join('\n');
    // (Nothing captured only when a name pattern ran none of these tests.)
    if (printed.length > 0) assert.ok(transcript.length > 0, "the daemons' logs were captured");
    for (const [who, secret] of Object.entries(secrets)) {
      assert.ok(!everything.includes(secret), `the ${who} password appeared in a log or output`);
    }
    // The endpoints are IP addresses: no TLS server name is sent for them, so Node has nothing to say.
    process.off('warning', onWarning);
    const serverName = /DEP0123|TLS ServerName to an IP/;
    assert.ok(!serverName.test(everything), 'a daemon or tokenctl printed DEP0123');
    assert.deepEqual(
      warnings.filter((w) => serverName.test(w)),
      [],
      'this process warned DEP0123',
    );
  });

  it('tokenctl cluster init as a non-root user over TLS; the host verifies a token, revokes it and refuses it', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(root, 'a');
    mkdirSync(dir);
    const before = await run(dir, '--output', 'json', 'token', 'add', 'root@pam!before');
    assert.equal(before.code, 0, before.stderr);
    const early = `PVEAPIToken=root@pam!before=${(JSON.parse(before.stdout) as { value: string }).value}`;

    const moved = await init(
      dir,
      'a',
      ...tlsArgs,
      '--user',
      USER,
      '--password-file',
      files.password,
    );
    assert.equal(moved.code, 0, moved.stderr);
    const text = readFileSync(path.join(dir, 'etc', 'cluster.json'), 'utf8');
    assert.ok(!text.includes(secrets.user), 'cluster.json names the password file only');
    const settings = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(settings.auth, { username: USER, passwordFile: files.password });
    assert.deepEqual(settings.tls, {
      ca: etcd.tls?.ca.caFile,
      cert: etcd.tls?.client.cert,
      key: etcd.tls?.client.key,
    });

    // The data is in etcd under the user's prefix, as root reads it.
    const admin = withoutIpServerName(new Etcd3(etcd.clientOptions()));
    try {
      const keys = await admin.getAll().prefix('/token-shadow/tls/data/shadow/').keys();
      assert.deepEqual(keys, ['/token-shadow/tls/data/shadow/root@pam!before']);
    } finally {
      admin.close();
    }

    const a = await deploy(dir);
    await a.managerLog.waitFor((l) => l.msg === 'cluster in sync');
    const api = await a.startApi('a', API_ARGS);
    apiA = api;
    assert.equal(await versionStatus(api, early), 200, 'a token moved into etcd works');

    const made = await run(dir, '--output', 'json', 'token', 'add', 'root@pam!made');
    assert.equal(made.code, 0, made.stderr);
    header = `PVEAPIToken=root@pam!made=${(JSON.parse(made.stdout) as { value: string }).value}`;
    assert.equal(await versionStatus(api, header), 200, 'a token made through etcd works');
    const removed = await run(dir, 'token', 'remove', 'root@pam!before');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await versionStatus(api, early), 401, 'refused once the revoke returned');
    assert.equal(await versionStatus(api, header), 200);

    const state = await run(dir, '--output', 'json', 'cluster', 'status');
    assert.equal(state.code, 0, state.stderr);
    const hosts = (JSON.parse(state.stdout) as { hosts: Array<{ host: string; live: boolean }> })
      .hosts;
    assert.deepEqual(
      hosts.map((h) => [h.host, h.live]),
      [['a', true]],
    );
  });

  /** A host whose cluster.json is `settings`: started, fenced, then (optionally) repaired. */
  const fencedHost = async (name: string, settings: Record<string, unknown>) => {
    const dir = path.join(root, name);
    mkdirSync(path.join(dir, 'etc'), { recursive: true, mode: 0o750 });
    writeFileSync(
      path.join(dir, 'etc', 'cluster.json'),
      JSON.stringify({
        cluster: 'tls',
        host: name,
        endpoints: etcd.endpoints,
        leaseSeconds: 2,
        ...settings,
      }),
      { mode: 0o600 },
    );
    const deployment = await deploy(dir);
    const ended = await deployment.managerLog.waitFor(
      (l) => l.msg === 'cluster session ended: fenced, resyncing',
    );
    const api = await deployment.startApi(name, API_ARGS);
    assert.equal(await versionStatus(api, header), 503, `${name}: fenced, it answers 503`);
    assert.equal(deployment.manager.exitCode, null, `${name}: the manager runs on`);
    return { dir, deployment, api, reason: String(ended.reason) };
  };

  it('a wrong password: tokenctl says etcd refused it; a host with it answers 503 until the file is right', {
    timeout: 90_000,
  }, async () => {
    assert.ok(header, 'the first test made a token');
    const dir = path.join(root, 'b');
    mkdirSync(dir);
    const refused = await init(
      dir,
      'b',
      ...tlsArgs,
      '--user',
      USER,
      '--password-file',
      files.wrong,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /etcd refused the user name and password/);
    assert.equal(existsSync(path.join(dir, 'etc', 'cluster.json')), false, 'no settings written');
    // The library's own error: typed, final (no retries until a deadline).
    const settings = resolveClusterSettings({
      endpoints: etcd.endpoints,
      tls: {
        ca: etcd.tls?.ca.caFile ?? '',
        cert: etcd.tls?.client.cert,
        key: etcd.tls?.client.key,
      },
      auth: { username: USER, passwordFile: files.wrong },
    });
    const client = createEtcdClient(settings);
    try {
      await assert.rejects(
        readClusterState(client, new ClusterKeys('tls'), 'tls', 60_000),
        (error) => error instanceof ClusterError && error.problem === 'refused',
      );
    } finally {
      client.close();
    }

    const passwordFile = path.join(root, 'b-password');
    writeFileSync(passwordFile, `${secrets.wrong}\n`, { mode: 0o600 });
    const host = await fencedHost('b', {
      tls: { ca: etcd.tls?.ca.caFile, cert: etcd.tls?.client.cert, key: etcd.tls?.client.key },
      auth: { username: USER, passwordFile },
    });
    assert.match(host.reason, /refused|authentication failed/);

    // The operator fixes the file: the agent's next session reads it and syncs.
    writeFileSync(passwordFile, `${secrets.user}\n`);
    await host.deployment.managerLog.waitFor((l) => l.msg === 'cluster in sync');
    assert.equal(await versionStatus(host.api, header), 200, 'in sync again, it accepts');

    // Two hosts on the TLS etcd: made on B, works on A; revoked on A, refused on both.
    assert.ok(apiA);
    const made = await run(host.dir, '--output', 'json', 'token', 'add', 'root@pam!both');
    assert.equal(made.code, 0, made.stderr);
    const both = `PVEAPIToken=root@pam!both=${(JSON.parse(made.stdout) as { value: string }).value}`;
    assert.equal(await versionStatus(apiA, both), 200);
    assert.equal(await versionStatus(host.api, both), 200);
    const removed = await run(path.join(root, 'a'), 'token', 'remove', 'root@pam!both');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await versionStatus(apiA, both), 401);
    assert.equal(
      await versionStatus(host.api, both),
      401,
      'refused on the other host once it returned',
    );
  });

  it('a user without a role on /token-shadow/: refused with a clear error, the host fenced', {
    timeout: 90_000,
  }, async () => {
    const dir = path.join(root, 'c');
    mkdirSync(dir);
    const refused = await init(
      dir,
      'c',
      '--join',
      ...tlsArgs,
      '--user',
      'elsewhere',
      '--password-file',
      files.roleless,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /etcd denied permission.*needs a role with readwrite/);
    const host = await fencedHost('c', {
      tls: { ca: etcd.tls?.ca.caFile, cert: etcd.tls?.client.cert, key: etcd.tls?.client.key },
      auth: { username: 'elsewhere', passwordFile: files.roleless },
    });
    assert.match(host.reason, /permission/);
  });

  it('no client certificate, or a CA that did not sign the members: tokenctl names the TLS problem; the host is fenced', {
    timeout: 120_000,
  }, async () => {
    const tls = etcd.tls;
    assert.ok(tls);
    const other = await makeTestCa(root, 'other-ca');
    const auth = { username: USER, passwordFile: files.password };
    const cases = [
      {
        name: 'd',
        args: ['--ca', tls.ca.caFile],
        tls: { ca: tls.ca.caFile },
        problem: /requires a client certificate/,
      },
      {
        name: 'e',
        args: ['--ca', other.caFile, '--cert', tls.client.cert, '--key', tls.client.key],
        tls: { ca: other.caFile, cert: tls.client.cert, key: tls.client.key },
        problem: /certificate is not signed by the CA in tls.ca/,
      },
    ];
    for (const c of cases) {
      const dir = path.join(root, c.name);
      mkdirSync(dir);
      const refused = await init(
        dir,
        c.name,
        '--join',
        ...c.args,
        '--user',
        USER,
        '--password-file',
        files.password,
      );
      assert.equal(refused.code, 1, c.name);
      assert.match(refused.stderr, /TLS to etcd failed/);
      assert.match(refused.stderr, c.problem);
      assert.equal(existsSync(path.join(dir, 'etc', 'cluster.json')), false, 'no settings written');
      const host = await fencedHost(c.name, { tls: c.tls, auth });
      // gRPC's own reason is vague; the manager's warning names the setting.
      const warned = await host.deployment.managerLog.waitFor(
        (l) => l.msg === 'cluster not reachable yet: serving fenced',
      );
      assert.match(String(warned.tlsProblem), c.problem);
    }
  });
});

describe('TLS and password settings, checked before etcd is asked', () => {
  const dir = tempDir('token-shadow-cluster-settings-');

  it('tokenctl cluster init refuses --user without --password-file, and --cert without --key', async () => {
    const base = ['cluster', 'init', '--endpoints', 'https://127.0.0.1:1', '--ca', '/x/ca.pem'];
    for (const extra of [
      ['--user', 'u'],
      ['--password-file', '/x/pw'],
      ['--cert', '/x/c.pem'],
    ]) {
      const run = await tokenctl(dir, ...base, ...extra);
      assert.equal(run.code, 1, extra.join(' '));
      assert.match(run.stderr, /go together/);
      assert.equal(existsSync(path.join(dir, 'etc', 'cluster.json')), false);
    }
  });

  it('cluster.json: tls and auth need their files named; cert and key go together', () => {
    const endpoints = ['https://127.0.0.1:2379'];
    for (const bad of [
      { tls: { ca: '' } },
      { tls: { ca: '/ca.pem', cert: '/c.pem' } },
      { tls: { ca: 5 } },
      { auth: { username: 'u' } },
      { auth: { username: '', passwordFile: '/pw' } },
    ]) {
      assert.throws(
        () => resolveClusterSettings({ endpoints, ...bad } as never),
        (error) => error instanceof ClusterError && error.problem === 'not-configured',
        JSON.stringify(bad),
      );
    }
  });

  it('the password file: a final line break dropped, spaces kept; missing or empty a typed error without content', () => {
    const file = path.join(dir, 'pw');
    writeFileSync(file, ' two words \n', { mode: 0o600 });
    assert.equal(readPasswordFile(file), ' two words ');
    writeFileSync(file, 'crlf\r\n');
    assert.equal(readPasswordFile(file), 'crlf');
    writeFileSync(file, '\n');
    assert.throws(() => readPasswordFile(file), /is empty/);
    assert.throws(
      () => readPasswordFile(path.join(dir, 'missing')),
      (error) =>
        error instanceof ClusterError &&
        error.problem === 'not-configured' &&
        /missing: cannot read \(ENOENT\)/.test(error.message),
    );
  });
});
