/**
 * Parsers for commander arguments and options. A bad value is a usage error
 * (exit 2) reported before anything is opened, with the id grammar's own
 * message, which never contains a secret.
 */
import { InvalidArgumentError } from 'commander';
import { isPoolId } from '../config/pools.js';
import { isGroupId, normalizeAclPath, splitList } from '../config/syntax.js';
import { quote } from '../errors.js';
import { parseTokenid, parseUserid, type Tokenid } from '../ids.js';
import { parseDuration } from '../service/durations.js';
import { parseExpire } from './dates.js';

function asUsageError<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

export const tokenidArgument: (value: string) => Tokenid = asUsageError(parseTokenid);

export const useridArgument: (value: string) => string = asUsageError(
  (value) => parseUserid(value).userid,
);

export const groupidArgument = asUsageError((value: string): string => {
  if (!isGroupId(value)) throw new Error(`invalid group id ${quote(value)}`);
  return value;
});

export const poolidArgument = asUsageError((value: string): string => {
  if (!isPoolId(value)) throw new Error(`invalid pool id ${quote(value)}`);
  return value;
});

/** VM ids in PVE's list syntax. */
export const vmidListArgument = asUsageError((value: string): number[] =>
  splitList(value).map((item) => {
    if (!/^\d+$/.test(item)) throw new Error(`invalid vm id ${quote(item)}`);
    return Number(item);
  }),
);

export const aclPathArgument = asUsageError((value: string): string => {
  const path = normalizeAclPath(value);
  if (path === null) throw new Error(`invalid ACL path ${quote(value)}: must start with '/'`);
  return path;
});

export const expireArgument: (value: string) => number = asUsageError(parseExpire);

/** `90d`, `12h`, `10s`: milliseconds. */
export const durationArgument: (value: string) => number = asUsageError(parseDuration);

/** PVE's `<boolean>`: 1|0, yes|no, on|off, true|false (any case), as pveum takes it. */
export const flagArgument = asUsageError((value: string): boolean => {
  const word = value.toLowerCase();
  if (['1', 'yes', 'on', 'true'].includes(word)) return true;
  if (['0', 'no', 'off', 'false'].includes(word)) return false;
  throw new Error(`expected 0 or 1 (or yes/no, on/off, true/false), not ${quote(value)}`);
});

/** `a,b c;d`: PVE's list syntax. */
export function listArgument(value: string): string[] {
  return splitList(value);
}

/**
 * A token named as tokenctl does (`USER@REALM!NAME`) or as pveum does
 * (`USER@REALM NAME`, two arguments). Throws a usage error for both at once.
 */
export function tokenidOf(first: string, name: string | undefined): Tokenid {
  if (name === undefined) return tokenidArgument(first);
  if (first.includes('!')) {
    throw new InvalidArgumentError(
      `give USER@REALM!NAME or USER@REALM NAME, not ${quote(first)} and a name`,
    );
  }
  return tokenidArgument(`${first}!${name}`);
}
