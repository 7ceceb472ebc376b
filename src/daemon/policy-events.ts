/**
 * What token policy saw on requests (a right secret refused for its source, a
 * previous secret used during a rotation's grace): a worker logs it and tells
 * the manager (which sends the webhook), once per token, kind and source a
 * minute: a client retrying every second must not cost a log line or an event
 * per request. The source address is no secret; the secret never gets here.
 */
import type { PolicyEvent } from '../http/authenticate.js';
import { isTokenid } from '../ids.js';
import type { Logger } from './logger.js';
import type { RpcClient } from './rpc.js';

/** The manager's op for a worker's policy event (no credential: the socket is the API group's). */
export const POLICY_EVENT_OP = 'policy.event';

const REPEAT_MS = 60_000;
const MAX_REMEMBERED = 10_000;
const KINDS: readonly PolicyEvent['kind'][] = ['source-refused', 'previous-secret-used'];

/** A filter that lets each (kind, token, source) through once per minute. */
export function oncePerMinute(now: () => number = Date.now): (event: PolicyEvent) => boolean {
  const told = new Map<string, number>();
  return (event) => {
    const key = `${event.kind}\n${event.tokenid}\n${event.source ?? ''}\n${event.afterGrace === true}`;
    const at = now();
    const last = told.get(key);
    if (last !== undefined && at - last < REPEAT_MS) return false;
    if (told.size >= MAX_REMEMBERED) told.clear();
    told.set(key, at);
    return true;
  };
}

export function logPolicyEvent(log: Logger, event: PolicyEvent): void {
  const fields = { tokenid: event.tokenid, source: event.source ?? null, event: event.kind };
  if (event.kind === 'source-refused') {
    log.warn(fields, 'token used from an address its allowed-ips does not list');
  } else if (event.afterGrace === true) {
    log.warn(fields, "a token's previous secret was used after its rotation grace ended: refused");
  } else log.info(fields, "a token's previous secret was used during its rotation grace");
}

/** The worker's side: logged, then sent to the manager; a manager that is away loses only this. */
export function policyEventReporter(log: Logger, rpc: RpcClient): (event: PolicyEvent) => void {
  const fresh = oncePerMinute();
  return (event) => {
    if (!fresh(event)) return;
    logPolicyEvent(log, event);
    rpc.call(POLICY_EVENT_OP, '', { ...event }).catch((error: unknown) => {
      log.warn({ err: String(error), event: event.kind }, 'policy event not told to the manager');
    });
  };
}

/** A policy event as a worker sent it, or null when it is not one. */
export function policyEventOf(params: Record<string, unknown>): PolicyEvent | null {
  const { kind, tokenid, source, afterGrace } = params;
  if (!KINDS.includes(kind as PolicyEvent['kind'])) return null;
  if (typeof tokenid !== 'string' || !isTokenid(tokenid)) return null;
  if (source !== undefined && (typeof source !== 'string' || source.length > 64)) return null;
  if (afterGrace !== undefined && typeof afterGrace !== 'boolean') return null;
  return {
    kind: kind as PolicyEvent['kind'],
    tokenid,
    source: source as string | undefined,
    ...(afterGrace === true ? { afterGrace } : {}),
  };
}
