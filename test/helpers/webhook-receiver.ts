/**
 * A real HTTP webhook receiver for tests: checks every signature (HMAC-SHA256
 * over the timestamp and body with SECRET) and waits for events by count.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { TokenEvent } from '../../src/events/webhooks.js';

export const SECRET = 'a-signing-secret-for-tests';

export interface Receiver {
  url: string;
  events: TokenEvent[];
  bodies: string[];
  /** Resolves once `count` events arrived (never by a timer). */
  received(count: number): Promise<TokenEvent[]>;
  close(): Promise<void>;
}

/** A real HTTP receiver that checks every signature; `failFirst` requests answer 500. */
export async function receiver(port: number, failFirst = 0): Promise<Receiver> {
  const events: TokenEvent[] = [];
  const bodies: string[] = [];
  const waiters: (() => void)[] = [];
  let failures = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const header = String(req.headers['x-token-shadow-signature']);
      const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
      const expected = match
        ? createHmac('sha256', SECRET).update(`${match[1]}.${body}`).digest('hex')
        : null;
      if (!match || expected !== match[2]) {
        res.writeHead(401).end();
        throw new Error(`bad signature ${header}`);
      }
      if (failures < failFirst) {
        failures++;
        res.writeHead(500).end();
        return;
      }
      const event = JSON.parse(body) as TokenEvent;
      assert.equal(req.headers['x-token-shadow-delivery'], event.id);
      events.push(event);
      bodies.push(body);
      res.writeHead(204).end();
      for (const wake of waiters.splice(0)) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}/hook`,
    events,
    bodies,
    async received(count) {
      while (events.length < count) await new Promise<void>((wake) => waiters.push(wake));
      return events;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
