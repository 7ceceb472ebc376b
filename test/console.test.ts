/**
 * The web console in a real browser (Debian's headless Chromium, driven by
 * playwright-core) against the real daemons: sign in with a token by
 * keyboard, create a token and read its secret once, use it with a real HTTP
 * client, revoke it in the console (then 401 from every worker), bulk-revoke
 * by filter, a comment holding markup shown as text with no script run, and
 * a revoked sign-in token signed out. With TOKEN_SHADOW_SCREENSHOTS=1 the
 * README's screenshots are written to docs/console/.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { type Api, call, type Deployment, pveHeader, startDeployment } from '../harness/daemons.js';
import { LAST_USED_FILE, parseLastUsed } from '../src/usage/file.js';
import { waitForFile } from './helpers/files.js';
import { tempDir } from './helpers/tmp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = process.env.TOKEN_SHADOW_SCREENSHOTS
  ? fileURLToPath(new URL('../../docs/console/', import.meta.url))
  : null;
/** CI installs Debian's chromium; elsewhere the browser tests may be skipped, saying why. */
const skip =
  !existsSync(CHROMIUM) && !process.env.CI
    ? `no Chromium at ${CHROMIUM} (Debian: chromium)`
    : false;

const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';

describe('the web console in a real browser', { skip }, () => {
  let deployment: Deployment;
  let api: Api;
  let browser: Browser;
  let page: Page;
  let origin: string;
  let adminSecret: string;
  const dir = tempDir();

  /** A token's answer from a fresh connection each time, so the cluster spreads them over its workers. */
  async function statuses(header: string, times = 6, localAddress?: string): Promise<number[]> {
    const answers: number[] = [];
    for (let i = 0; i < times; i++) {
      const options = { auth: header, ...(localAddress ? { localAddress } : {}) };
      answers.push((await call(api, 'GET', '/version', options)).status);
    }
    return answers;
  }

  async function created(name: string, comment: string): Promise<string> {
    const reply = await deployment.asRoot('token.create', {
      userid: 'joe@pve',
      tokenName: name,
      fields: { comment, privsep: false },
    });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    return (reply as unknown as { data: { value: string } }).data.value;
  }

  async function shot(name: string): Promise<void> {
    if (SHOTS === null) return;
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }

  before(async () => {
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
    origin = new URL(api.url).origin;
    const admin = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'console',
      fields: { privsep: false, comment: 'the console' },
    });
    adminSecret = (admin as unknown as { data: { value: string } }).data.value;
    assert.equal(
      (await deployment.asRoot('user.create', { userid: 'joe@pve', fields: {} })).ok,
      true,
    );
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    // The deployment's certificate is self-signed for 127.0.0.1.
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1200, height: 800 },
    });
    page = await context.newPage();
    page.on('dialog', (dialog) => void dialog.accept());
  });
  after(async () => {
    await browser?.close();
    await deployment?.stop();
  });

  it('is served at / with a strict Content-Security-Policy and nothing from elsewhere', async () => {
    const requests: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    const response = await page.goto(`${origin}/`);
    assert.equal(response?.status(), 200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(response?.headers()['x-frame-options'], 'DENY');
    await page.waitForSelector('#signin-form');
    for (const url of requests) assert.ok(url.startsWith(origin), `${url} is from elsewhere`);
    assert.equal(await page.locator('script:not([src])').count(), 0, 'no inline script');
  });

  it('signs in with a token, by keyboard, keeping the secret out of storage and URLs', async () => {
    await page.focus('#tokenid');
    await page.keyboard.type('root@pam!console');
    await page.keyboard.press('Tab');
    await page.keyboard.type(adminSecret);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#app:not([hidden])');
    assert.equal(await page.textContent('#whoami'), 'root@pam!console');
    const kept = await page.evaluate(() => ({
      local: JSON.stringify(localStorage),
      session: JSON.stringify(sessionStorage),
      cookie: document.cookie,
      url: location.href,
    }));
    for (const place of Object.values(kept)) assert.ok(!place.includes(adminSecret));
    assert.equal(await page.inputValue('#secret'), '', 'the secret field is emptied');
    await shot('tokens');
  });

  it('says single-host mode in its Cluster section', async () => {
    await page.waitForFunction(
      () => document.getElementById('cluster-summary')?.textContent !== '',
    );
    assert.equal(await page.textContent('#cluster-summary'), 'Single-host mode: no cluster.');
    assert.equal(await page.isHidden('#cluster-hosts'), true);
    const view = await call(api, 'GET', '/cluster/token-shadow', {
      auth: pveHeader('root@pam!console', adminSecret),
    });
    assert.deepEqual(view.body, { data: { mode: 'single-host' } });
  });

  let secret = '';
  it('creates a token and shows its secret once; the secret works from a real client', async () => {
    await page.selectOption('#create-user', 'joe@pve');
    await page.fill('#create-name', 'ci');
    await page.fill('#create-comment', XSS);
    await page.click('#create-form button[type=submit]');
    await page.waitForSelector('#secret-dialog[open]');
    assert.equal(await page.textContent('#secret-id'), 'joe@pve!ci');
    secret = await page.inputValue('#secret-value');
    assert.match(secret, /\S{20,}/);
    await shot('new-secret');
    await page.click('#secret-dialog [data-close]');
    assert.equal(await page.inputValue('#secret-value'), '', 'gone once the dialog closes');
    assert.deepEqual(
      await statuses(pveHeader('joe@pve!ci', secret)),
      [200, 200, 200, 200, 200, 200],
    );
  });

  it('shows a comment holding markup as that text, and runs none of it', async () => {
    const row = page.locator('tr[data-token="joe@pve!ci"]');
    assert.equal(await row.locator('td.comment').textContent(), XSS);
    assert.equal(await row.locator('img, script').count(), 0);
    assert.equal(await page.evaluate(() => (window as { __xss?: number }).__xss), undefined);
  });

  it('shows where a token was last used from, next to when, as text', async () => {
    const placed = await created('placed', 'used from 127.0.0.2');
    const reply = await call(api, 'GET', '/version', {
      auth: pveHeader('joe@pve!placed', placed),
      localAddress: '127.0.0.2',
    });
    assert.equal(reply.status, 200);
    // Once the manager recorded it, whichever worker answers the console knows it.
    const file = path.join(dir, 'etc', LAST_USED_FILE);
    await waitForFile(
      file,
      (text) => parseLastUsed(file, text).tokens.get('joe@pve!placed')?.source,
    );
    await page.click('#reload');
    const row = page.locator('tr[data-token="joe@pve!placed"]');
    await row.locator('td.where', { hasText: '127.0.0.2' }).waitFor();
    assert.equal(await row.locator('td.where').textContent(), '127.0.0.2');
    assert.notEqual(
      await row.locator('td.where').evaluate((td) => td.previousElementSibling?.textContent),
      'never',
    );
    assert.equal(await page.locator('#tokens th', { hasText: 'Where' }).count(), 1);
  });

  it("shows a token's effective permissions", async () => {
    await page.click('button[aria-label="Permissions joe@pve!ci"]');
    await page.waitForSelector('#permissions-dialog[open]');
    assert.equal(await page.textContent('#permissions-id'), 'joe@pve!ci');
    assert.ok((await page.locator('#permissions-body tr').count()) >= 1);
    await shot('permissions');
    await page.click('#permissions-dialog [data-close]');
  });

  it('revokes the token: every worker refuses it at once', async () => {
    await page.click('button[aria-label="Revoke joe@pve!ci"]');
    await page.waitForSelector('tr[data-token="joe@pve!ci"]', { state: 'detached' });
    assert.deepEqual(
      await statuses(pveHeader('joe@pve!ci', secret)),
      [401, 401, 401, 401, 401, 401],
    );
  });

  it('rotates with a grace: both secrets work until it ends, and the table says until when', async () => {
    const old = await created('rolling', 'rotated with overlap');
    await page.click('#reload');
    await page.click('button[aria-label="Rotate joe@pve!rolling"]');
    await page.waitForSelector('#rotate-dialog[open]');
    assert.equal(await page.textContent('#rotate-id'), 'joe@pve!rolling');
    await page.selectOption('#rotate-grace', '3600');
    await shot('rotate');
    await page.click('#rotate-form button[type=submit]');
    await page.waitForSelector('#secret-dialog[open]');
    const fresh = await page.inputValue('#secret-value');
    await page.click('#secret-dialog [data-close]');
    assert.match((await page.textContent('#status')) ?? '', /the old secret works until /);
    const row = page.locator('tr[data-token="joe@pve!rolling"]');
    assert.match((await row.locator('small.grace').textContent()) ?? '', /previous secret until/);
    assert.deepEqual(
      await statuses(pveHeader('joe@pve!rolling', old)),
      [200, 200, 200, 200, 200, 200],
    );
    assert.deepEqual(
      await statuses(pveHeader('joe@pve!rolling', fresh)),
      [200, 200, 200, 200, 200, 200],
    );
  });

  it('edits where a token may be used from: elsewhere is refused at once', async () => {
    const value = await created('fenced-in', 'only from 127.0.0.2');
    await page.click('#reload');
    await page.click('button[aria-label="Edit joe@pve!fenced-in"]');
    await page.waitForSelector('#edit-dialog[open]');
    await page.fill('#edit-allowed', '127.0.0.2');
    await page.click('#edit-form button[type=submit]');
    const row = page.locator('tr[data-token="joe@pve!fenced-in"]');
    await row.locator('small.allowed').waitFor();
    assert.equal(await row.locator('small.allowed').textContent(), 'from 127.0.0.2');
    const header = pveHeader('joe@pve!fenced-in', value);
    assert.deepEqual(await statuses(header, 4, '127.0.0.2'), [200, 200, 200, 200]);
    assert.deepEqual(await statuses(header, 4, '127.0.0.3'), [401, 401, 401, 401]);
  });

  it('bulk-revokes what a filter keeps, after saying how many', async () => {
    const batch = await Promise.all(['b1', 'b2', 'b3'].map((n) => created(n, 'batch job')));
    const keep = await created('keep', 'stays');
    await page.click('#reload');
    await page.waitForSelector('tr[data-token="joe@pve!b3"]');
    await page.fill('#filter-text', 'batch');
    assert.match((await page.textContent('#token-count')) ?? '', /^3 of \d+ tokens$/);
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
    });
    await page.click('#bulk-revoke');
    await page.waitForSelector('tr[data-token="joe@pve!b1"]', { state: 'detached' });
    assert.match(asked, /Revoke 3 tokens\?/);
    for (const [i, value] of batch.entries()) {
      assert.deepEqual(await statuses(pveHeader(`joe@pve!b${i + 1}`, value), 2), [401, 401]);
    }
    assert.deepEqual(await statuses(pveHeader('joe@pve!keep', keep), 2), [200, 200]);
  });

  it('signs out when its own token is revoked elsewhere', async () => {
    await deployment.asRoot('token.delete', { userid: 'root@pam', tokenName: 'console' });
    await page.click('#reload');
    await page.waitForSelector('#signin:not([hidden])');
    assert.match((await page.textContent('#status')) ?? '', /Signed out: the token was refused/);
    assert.equal(await page.isHidden('#app'), true);
  });
});

describe('the console turned off', { skip }, () => {
  it('answers 404 at / while the API serves', async () => {
    const deployment = await startDeployment(tempDir());
    try {
      const api = await deployment.startApi('api', ['--workers', '1', '--no-console']);
      const root = await call({ url: new URL(api.url).origin, ca: api.ca }, 'GET', '/');
      assert.equal(root.status, 404);
      const version = await call(api, 'GET', '/version');
      assert.equal(version.status, 401, 'the API is unchanged');
    } finally {
      await deployment.stop();
    }
  });
});
