/**
 * Where webhooks go: `<config-dir>/webhooks.json`, root's alone (it holds the
 * endpoints' signing secrets, which is why it is not the API's settings file,
 * which the workers read). Read by the manager at start and at each reload; a
 * bad file is refused with the reason and the old settings stay.
 *
 *   { "endpoints": [ { "url": "https://hooks.example/ts", "secret": "at least 16 characters",
 *                      "events": ["token.revoked"], "timeoutMs": 5000 } ],
 *     "expiryLeadDays": [30, 7, 1], "unusedAfter": "90d", "retryMaxMs": 300000 }
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { parseDuration } from '../service/durations.js';
import { EVENT_TYPES, type EventType } from './webhooks.js';

export interface WebhookEndpoint {
  url: string;
  secret: string;
  /** The event types sent there; null for all. */
  events: EventType[] | null;
  timeoutMs: number;
}

export interface WebhookSettings {
  endpoints: WebhookEndpoint[];
  /** `token.expiring` this many days ahead (each once per token and expiry). */
  expiryLeadDays: number[];
  /** `token.unused` once a token's last use is this old; null for never. */
  unusedAfterSeconds: number | null;
  /** The longest wait between two tries of one delivery (backoff doubles from 1 s up to it). */
  retryMaxMs: number;
}

export const NO_WEBHOOKS: WebhookSettings = {
  endpoints: [],
  expiryLeadDays: [30, 7, 1],
  unusedAfterSeconds: null,
  retryMaxMs: 5 * 60 * 1000,
};

function invalid(file: string, detail: string): never {
  throw new ConfigError('invalid', `${file}: ${detail}`);
}

/** The settings in `file`; NO_WEBHOOKS when there is none. */
export async function readWebhookSettings(file: string): Promise<WebhookSettings> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return NO_WEBHOOKS;
    throw error;
  }
  let raw: {
    endpoints?: unknown;
    expiryLeadDays?: unknown;
    unusedAfter?: unknown;
    retryMaxMs?: unknown;
  };
  try {
    raw = JSON.parse(text);
  } catch {
    return invalid(file, 'not JSON');
  }
  if (raw === null || typeof raw !== 'object') return invalid(file, 'not an object');
  const endpoints = raw.endpoints ?? [];
  if (!Array.isArray(endpoints)) return invalid(file, 'endpoints must be a list');
  const seen = new Set<string>();
  const parsed = endpoints.map((entry: Record<string, unknown>, i): WebhookEndpoint => {
    const where = `endpoints[${i}]`;
    if (typeof entry?.url !== 'string' || !/^https?:\/\/[^\s]+$/.test(entry.url)) {
      return invalid(file, `${where}.url must be an http(s) URL`);
    }
    if (seen.has(entry.url)) return invalid(file, `${where}.url is listed twice`);
    seen.add(entry.url);
    if (typeof entry.secret !== 'string' || entry.secret.length < 16) {
      return invalid(file, `${where}.secret must be a string of at least 16 characters`);
    }
    let events: EventType[] | null = null;
    if (entry.events !== undefined) {
      if (
        !Array.isArray(entry.events) ||
        !entry.events.every((e) => (EVENT_TYPES as readonly unknown[]).includes(e))
      ) {
        return invalid(file, `${where}.events must list some of ${EVENT_TYPES.join(', ')}`);
      }
      events = entry.events as EventType[];
    }
    const timeoutMs = entry.timeoutMs ?? 5000;
    if (
      !Number.isInteger(timeoutMs) ||
      (timeoutMs as number) < 100 ||
      (timeoutMs as number) > 60_000
    ) {
      return invalid(file, `${where}.timeoutMs must be an integer from 100 to 60000`);
    }
    return { url: entry.url, secret: entry.secret, events, timeoutMs: timeoutMs as number };
  });
  const leads = raw.expiryLeadDays ?? NO_WEBHOOKS.expiryLeadDays;
  if (
    !Array.isArray(leads) ||
    !leads.every((d) => Number.isInteger(d) && (d as number) >= 1 && (d as number) <= 3650)
  ) {
    return invalid(file, 'expiryLeadDays must list whole days from 1 to 3650');
  }
  let unusedAfterSeconds: number | null = null;
  if (raw.unusedAfter !== undefined) {
    if (typeof raw.unusedAfter !== 'string') return invalid(file, 'unusedAfter must be like "90d"');
    try {
      unusedAfterSeconds = Math.floor(parseDuration(raw.unusedAfter) / 1000);
    } catch (error) {
      return invalid(file, `unusedAfter: ${(error as Error).message}`);
    }
    if (unusedAfterSeconds < 1) return invalid(file, 'unusedAfter must be at least 1s');
  }
  const retryMaxMs = raw.retryMaxMs ?? NO_WEBHOOKS.retryMaxMs;
  if (
    !Number.isInteger(retryMaxMs) ||
    (retryMaxMs as number) < 100 ||
    (retryMaxMs as number) > 86_400_000
  ) {
    return invalid(file, 'retryMaxMs must be an integer from 100 to 86400000');
  }
  return {
    endpoints: parsed,
    expiryLeadDays: leads as number[],
    unusedAfterSeconds,
    retryMaxMs: retryMaxMs as number,
  };
}
