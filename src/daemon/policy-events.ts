/**
 * What token policy saw on requests (a right secret refused for its source, a
 * previous secret used during a rotation's grace), told once per token, kind
 * and source a minute: a client retrying every second must not write a log
 * line per request. The source address is no secret; the secret never gets here.
 */
import type { PolicyEvent } from '../http/authenticate.js';
import type { Logger } from './logger.js';

const REPEAT_MS = 60_000;
const MAX_REMEMBERED = 10_000;

export function policyEventLog(
  log: Logger,
  now: () => number = Date.now,
): (event: PolicyEvent) => void {
  const told = new Map<string, number>();
  return (event) => {
    const key = `${event.kind}\n${event.tokenid}\n${event.source ?? ''}`;
    const at = now();
    const last = told.get(key);
    if (last !== undefined && at - last < REPEAT_MS) return;
    if (told.size >= MAX_REMEMBERED) told.clear();
    told.set(key, at);
    const fields = { tokenid: event.tokenid, source: event.source ?? null, event: event.kind };
    if (event.kind === 'source-refused')
      log.warn(fields, 'token used from an address its allowed-ips does not list');
    else log.info(fields, "a token's previous secret was used during its rotation grace");
  };
}
