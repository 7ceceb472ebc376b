/**
 * A deployment of N tokens for the scale benchmarks (bench/daemon-scale.ts,
 * bench/cluster-scale.ts): N/100 users of 100 privilege-separated tokens each
 * with real argon2id hash strings, the daemons as `npm start` runs them, and
 * plain HTTP requests against them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import argon2 from 'argon2';
import { type Api, startDeployment } from '../../harness/daemons.js';
import { DEFAULT_ARGON2 } from '../../src/hashing/params.js';
import { serializeShadow } from '../../src/shadow/file.js';
import { TokenDatabaseWriter, type TokenRow } from '../../src/store/token-database.js';
import { track, trackPid, untrackPid } from './children.js';

export type Store = 'database' | 'files';

export const PER_USER = 100;
export const ADMIN_SECRET = 'bench-admin-secret-0123456789';

/** Progress on stderr (a 1,000,000-token size runs for minutes). */
export function progress(message: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

/** One request on `agent` (a new connection without one); its status and the ms it took. */
export function request(
  api: Api,
  method: string,
  route: string,
  form: Record<string, string> | null,
  agent?: http.Agent,
  authorization = `PVEAPIToken=root@pam!admin=${ADMIN_SECRET}`,
): Promise<{ status: number; ms: number; body: string }> {
  const body = form === null ? undefined : new URLSearchParams(form).toString();
  const t = performance.now();
  const caller = new Error().stack?.split('\n')[2]?.trim() ?? '';
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(`${api.url}${route}`),
      {
        method,
        agent: agent ?? false,
        headers: {
          authorization,
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - t, body: text }),
        );
      },
    );
    req.on('error', (error) => {
      reject(
        Object.assign(new Error(`${method} ${route} (${caller}): ${error.message}`), {
          code: (error as NodeJS.ErrnoException).code,
        }),
      );
    });
    if (body) req.write(body);
    req.end();
  });
}

export async function ok(
  reply: Promise<{ status: number; ms: number; body: string }>,
): Promise<number> {
  const { status, ms, body } = await reply;
  if (status !== 200) throw new Error(`status ${status}: ${body.slice(0, 300)}`);
  return ms;
}

/** The deployment's files: user.cfg (and token lines, with `files`), token.shadow or access.db. */
export async function build(
  configDir: string,
  n: number,
  store: Store,
  hashes: string[],
): Promise<void> {
  mkdirSync(configDir, { recursive: true, mode: 0o750 });
  const users = n / PER_USER;
  const adminHash = await argon2.hash(ADMIN_SECRET, { type: argon2.argon2id, ...DEFAULT_ARGON2 });
  const lines = ['user:root@pam:1:0::::::', 'token:root@pam!admin:1:0:0::'];
  const now = Math.floor(Date.now() / 1000);
  if (store === 'files') {
    const shadow = new Map<string, string>([['root@pam!admin', adminHash]]);
    for (let u = 0; u < users; u++) {
      lines.push(`user:u${u}@pve:1:0::::::`);
      for (let t = 0; t < PER_USER; t++) {
        lines.push(`token:u${u}@pve!t${t}:1:0:1::`);
        shadow.set(`u${u}@pve!t${t}`, hashes[(u * PER_USER + t) % hashes.length] as string);
      }
    }
    writeFileSync(path.join(configDir, 'token.shadow'), serializeShadow(shadow), { mode: 0o640 });
    writeFileSync(path.join(configDir, 'user.cfg'), `${lines.join('\n')}\n`, { mode: 0o640 });
    return;
  }
  lines.splice(1, 1); // the admin token is a row too
  for (let u = 0; u < users; u++) lines.push(`user:u${u}@pve:1:0::::::`);
  writeFileSync(path.join(configDir, 'user.cfg'), `${lines.join('\n')}\n`, { mode: 0o640 });
  const writer = new TokenDatabaseWriter(path.join(configDir, 'access.db'));
  try {
    const row = (id: string, userid: string, hash: string, privsep: boolean): TokenRow => ({
      id,
      userid,
      hash,
      enable: true,
      expire: 0,
      privsep,
      comment: '',
      created: now,
    });
    writer.put([row('root@pam!admin', 'root@pam', adminHash, false)]);
    const batch: TokenRow[] = [];
    for (let u = 0; u < users; u++) {
      for (let t = 0; t < PER_USER; t++) {
        const hash = hashes[(u * PER_USER + t) % hashes.length] as string;
        batch.push(row(`u${u}@pve!t${t}`, `u${u}@pve`, hash, true));
      }
      if (batch.length >= 100_000) writer.put(batch.splice(0));
    }
    if (batch.length > 0) writer.put(batch);
  } finally {
    writer.close();
  }
}

/** The daemons on `dir` as `npm start` runs them, once the API answers the admin token. */
export async function started(dir: string) {
  const deployment = await startDeployment(dir, {
    logs: 'file',
    env: { UV_THREADPOOL_SIZE: '4' },
    track: { child: track, pid: trackPid, forget: untrackPid },
  });
  try {
    const api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1'], {
      plainHttp: true,
    });
    // 503 until the manager is up; a refused connection while a worker (re)starts.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { status } = await request(api, 'GET', '/version', null).catch((error) => {
        if ((error as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > deadline) {
          throw error;
        }
        return new Promise<{ status: number }>((resolve) =>
          setTimeout(() => resolve({ status: 0 }), 50),
        );
      });
      if (status === 200) break;
      if (status !== 503 && status !== 0) throw new Error(`the API answered ${status}`);
    }
    return { deployment, api };
  } catch (error) {
    await deployment.stop();
    throw error;
  }
}

/** The secret of token t of user u (the bench's hash strings hide `hash-<k>`). */
export function headerOf(u: number, t: number, hashCount: number): string {
  return `PVEAPIToken=u${u}@pve!t${t}=hash-${(u * PER_USER + t) % hashCount}`;
}

/**
 * A bulk revocation's plan: the last users, min(10,000, N/10) tokens of them,
 * and 20 of their tokens to verify before it (cached) and after (refused).
 */
export function bulkPlan(n: number, hashCount: number) {
  const bulkUsers = Math.max(1, Math.min(10_000, n / 10) / PER_USER);
  const first = n / PER_USER - bulkUsers;
  return {
    bulkUsers,
    users: Array.from({ length: bulkUsers }, (_, i) => `u${first + i}@pve`).join(','),
    checks: Array.from({ length: 20 }, (_, i) =>
      headerOf(first + (i % bulkUsers), 50 + Math.floor(i / bulkUsers), hashCount),
    ),
  };
}

/** `times` answers of `api` to `header` (both workers, when more than one). */
export async function statusesOf(api: Api, header: string, times = 4): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < times; i++) {
    out.push((await request(api, 'GET', '/version', null, undefined, header)).status);
  }
  return out;
}
