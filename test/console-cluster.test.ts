/**
 * The cluster view (issue 29) against a real multi-host deployment: a real
 * 3-member etcd on loopback, two hosts' real managers and APIs. GET
 * /cluster/token-shadow answers every host's registration, acked revision and
 * lease, and this host's fence, on either host, for Sys.Audit on / only; the
 * console in a real browser (Debian's Chromium) shows it as text in its
 * Cluster section, and shows a host that stopped as gone and fenced.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { type Api, call, type Deployment } from '../harness/daemons.js';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { addTokenIn, startClusterHosts, tokenctlIn as tokenctl } from '../harness/tokenctl.js';
import type { ClusterView } from '../src/cluster/admin.js';
import { tempDir } from './helpers/tmp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const why =
  etcdUnavailable() ??
  (!existsSync(CHROMIUM) && !process.env.CI ? `no Chromium at ${CHROMIUM}` : null);
if (why) process.stdout.write(`# cluster console tests skipped: ${why}\n`);

type MultiHostView = Extract<ClusterView, { mode: 'multi-host' }>;

describe('the cluster view, multi-host', { skip: why ?? false }, () => {
  let etcd: EtcdCluster;
  const running: Deployment[] = [];
  const dirA = tempDir('token-shadow-view-a-');
  const dirB = tempDir('token-shadow-view-b-');
  let apiA: Api;
  let apiB: Api;
  let admin: string;
  let adminSecret: string;
  let browser: Browser;
  let page: Page;

  async function view(api: Api, auth = admin) {
    return call(api, 'GET', '/cluster/token-shadow', { auth });
  }

  before(async () => {
    etcd = await startEtcdCluster();
    const [a, b] = (await startClusterHosts(
      etcd.endpoints,
      'viewed',
      [
        { host: 'a', dir: dirA },
        { host: 'b', dir: dirB },
      ],
      running,
    )) as [Deployment, Deployment];
    const args = ['--workers', '1', '--hash-threads', '1'];
    apiA = await a.startApi('a', args);
    apiB = await b.startApi('b', ['--plain-http', ...args]);
    adminSecret = (await addTokenIn(dirA, 'root@pam!view', '--privsep', '0')).secret;
    admin = `PVEAPIToken=root@pam!view=${adminSecret}`;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    for (const d of running) await d.stop();
    await etcd?.stop();
  });

  it('answers every host, its acked revision and lease, and this host’s fence, on each host', async () => {
    for (const [api, host] of [
      [apiA, 'a'],
      [apiB, 'b'],
    ] as const) {
      const reply = await view(api);
      assert.equal(reply.status, 200, reply.raw);
      const data = reply.body.data as MultiHostView;
      assert.equal(data.mode, 'multi-host');
      assert.equal(data.cluster, 'viewed');
      assert.equal(data.host, host);
      assert.equal(data.local.fence, 'open');
      assert.ok((data.local.fenceRemainingMs ?? 0) > 0);
      assert.deepEqual(
        data.hosts.map((h) => [h.host, h.live, h.fenced]),
        [
          ['a', true, false],
          ['b', true, false],
        ],
      );
      for (const h of data.hosts) {
        // The token add (the last data change) returned only once every live host acked it.
        assert.equal(h.ackedRevision, data.dataRevision, h.host);
        assert.equal(h.behind, 0);
        assert.ok(h.leaseRemainingMs > 0 && h.leaseRemainingMs <= 2000, String(h.leaseRemainingMs));
      }
    }
  });

  it('needs Sys.Audit on /: a token without it gets 403 on either host', async () => {
    assert.equal((await tokenctl(dirA, 'user', 'add', 'joe@pve')).code, 0);
    const joe = (await addTokenIn(dirA, 'joe@pve!look', '--privsep', '0')).header;
    assert.equal((await view(apiA, joe)).status, 403);
    assert.equal((await view(apiB, joe)).status, 403);
    const acl = await tokenctl(
      dirB,
      'acl',
      'set',
      '/',
      '--roles',
      'PVEAuditor',
      '--users',
      'joe@pve',
    );
    assert.equal(acl.code, 0, acl.stderr);
    assert.equal((await view(apiA, joe)).status, 200);
  });

  it('shows the cluster in the console, as text; a stopped host as gone and fenced', async () => {
    await page.goto(`${new URL(apiA.url).origin}/`);
    await page.fill('#tokenid', 'root@pam!view');
    await page.fill('#secret', adminSecret);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#cluster-hosts:not([hidden])');
    assert.match(
      (await page.textContent('#cluster-summary')) ?? '',
      /^Cluster viewed, data revision \d+; this host a is open, \d+\.\d s of trust left\.$/,
    );
    const cells = async (host: string) =>
      page.locator(`#cluster-body tr[data-host="${host}"] td`).allTextContents();
    const rowA = await cells('a');
    assert.equal(rowA[0], 'a (this host)');
    assert.deepEqual([rowA[1], rowA[5]], ['yes', 'no']);
    assert.match(rowA[2] ?? '', /^\d+$/);
    assert.deepEqual([(await cells('b'))[1], (await cells('b'))[5]], ['yes', 'no']);

    // Host B's manager stops: its lease goes (revoked, or run out within 2 s).
    await (running[1] as Deployment).stop();
    running.splice(1, 1);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const data = (await view(apiA)).body.data as MultiHostView;
      if (data.hosts.find((h) => h.host === 'b')?.live === false) break;
      assert.ok(Date.now() < deadline, 'host b still live 10 s after its manager stopped');
      await delay(100); // polling etcd's answer, not timing the test
    }
    await page.click('#reload');
    await page.waitForFunction(
      () =>
        document.querySelector('#cluster-body tr[data-host="b"] td:nth-child(2)')?.textContent ===
        'no',
    );
    const rowB = await cells('b');
    assert.deepEqual([rowB[1], rowB[4], rowB[5]], ['no', '0 s', 'yes']);
    assert.equal(await page.locator('#cluster-body img, #cluster-body script').count(), 0);
  });
});
