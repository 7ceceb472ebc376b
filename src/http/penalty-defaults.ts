/**
 * The per-source penalties' defaults, apart from the module that enforces
 * them (source-penalties.ts, which parses addresses with ipaddr.js): the
 * settings read these, and an app that never penalises anything must not
 * need the daemons' dependencies to open its files.
 */
export const DEFAULT_PENALTY_BUDGET = 20;
export const DEFAULT_PENALTY_DECAY_PER_SECOND = 1;
export const DEFAULT_PENALTY_HOLD_MS = 2000;
export const DEFAULT_PENALTY_IPV4_PREFIX = 32;
/** An IPv6 subscriber gets a /64 at least: anything longer lets one client be many sources. */
export const DEFAULT_PENALTY_IPV6_PREFIX = 64;
