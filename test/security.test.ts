/**
 * Issue 10 against real daemons: what an attacker tried, each as a test that
 * failed before its fix. Cases 1 and 7 have their own files (page-swaps,
 * cut-lines).
 */
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { call, type Daemons, pveHeader, startDaemons } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

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
    const created = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'sec',
      fields: { privsep: false },
    });
    assert.equal(created.ok, true, JSON.stringify(created));
    const secret = (created.data as { value: string }).value;
    root = { id: 'root@pam!sec', secret, header: pveHeader('root@pam!sec', secret) };
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
