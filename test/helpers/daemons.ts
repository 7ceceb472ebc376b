/** Assertions on the real daemons' answers (the harness itself, in harness/, asserts nothing). */
import assert from 'node:assert/strict';
import {
  type CallOptions,
  call,
  type Daemons,
  pveHeader,
  type Reply,
} from '../../harness/daemons.js';

/** call(), asserting the answer's status (the reply's text in the failure message). */
export async function callExpecting(
  status: number,
  d: { url: string; ca: Buffer },
  method: string,
  route: string,
  options: CallOptions = {},
): Promise<Reply> {
  const reply = await call(d, method, route, options);
  assert.equal(reply.status, status, `${method} ${route}: ${reply.raw}`);
  return reply;
}

/** A fresh `root@pam!NAME` token without privilege separation, made through the manager. */
export async function createRootToken(
  d: Pick<Daemons, 'asRoot'>,
  tokenName: string,
): Promise<{ id: string; secret: string; header: string }> {
  const created = await d.asRoot('token.create', {
    userid: 'root@pam',
    tokenName,
    fields: { privsep: false },
  });
  assert.equal(created.ok, true, JSON.stringify(created));
  const id = `root@pam!${tokenName}`;
  const secret = (created.data as { value: string }).value;
  return { id, secret, header: pveHeader(id, secret) };
}
