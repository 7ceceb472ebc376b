/**
 * Bulk revocation (issue 25): every token matching a filter - of these users,
 * whose comment matches a pattern, made before a time, not used since a time:
 * every criterion given must hold - removed with its secret as one
 * change (one write of user.cfg and one of token.shadow; one etcd transaction
 * in multi-host mode), announced once. An addition beside PVE's endpoints.
 * Every token taken is checked as a single delete would be: the caller's own,
 * or User.Modify; root@pam's only by root@pam.
 */
import { hasTokenAclEntries, removeAclEntriesWhere } from '../../config/acl.js';
import type { UserConfig } from '../../config/types.js';
import { ApiError } from '../../errors.js';
import { joinTokenid } from '../../ids.js';
import { tokenQueryOf } from '../../store/stored-tokens.js';
import {
  optionalCount,
  optionalList,
  optionalText,
  type ParameterSchema,
  type Raw,
  schema,
  splitList,
} from '../params.js';
import {
  ACCESS_GROUPS,
  type Caller,
  requirePrivileges,
  requireRootForRoot,
  requireSelfOrUserModify,
} from '../rules.js';
import { type Writer, write } from './operation.js';

export interface RevokeFilter {
  /** Tokens of these users only. */
  users?: string[];
  /** A glob on the comment: `*` any run, `?` one character, the rest literal. */
  comment?: string;
  /**
   * Made before this epoch second. Only the token database knows when a token
   * was made (a token moved into it counts as made then); on the files it is a 400.
   */
  createdBefore?: number;
  /**
   * Not used since this epoch second (never used counts), as the host's
   * last-use ledger has it: a use is recorded within one report interval, so
   * a time closer to now than two intervals is a 400.
   */
  lastUsedBefore?: number;
}

export interface Revoked {
  /** The token ids revoked, sorted. */
  revoked: string[];
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\*?]/g, (c) =>
    c === '*' ? '.*' : c === '?' ? '.' : `\\${c}`,
  );
  return new RegExp(`^${body}$`, 's');
}

/** A filter must say what it takes: an empty one would take every token. */
function requireCriterion(filter: RevokeFilter): void {
  const { users, comment, createdBefore, lastUsedBefore } = filter;
  if (
    users === undefined &&
    comment === undefined &&
    createdBefore === undefined &&
    lastUsedBefore === undefined
  ) {
    throw new ApiError(
      400,
      'a bulk revocation needs users, a comment pattern, created-before or last-used-before',
      { users: 'users, comment, created-before or last-used-before is required' },
    );
  }
}

/**
 * The ids of the tokens `filter` selects in `config`; `lastUse` gives each
 * token's last use (without it, `lastUsedBefore` holds for every token: the
 * most a filter could take, what privileges are checked on).
 */
export function tokensMatching(
  config: UserConfig,
  filter: RevokeFilter,
  lastUse?: (tokenid: string) => number | undefined,
): string[] {
  requireCriterion(filter);
  const { users: only, comment: glob, createdBefore, lastUsedBefore } = filter;
  const comment = glob === undefined ? null : globToRegExp(glob);
  const users = only ?? usersToLookAt(config, filter) ?? [...config.users.keys()];
  const ids: string[] = [];
  for (const userid of users) {
    const user = config.users.get(userid);
    if (user === undefined) continue;
    for (const [name, token] of user.tokens) {
      if (comment !== null && !comment.test(token.comment)) continue;
      if (createdBefore !== undefined) {
        if (token.created === undefined) {
          throw new ApiError(
            400,
            'created-before needs the token database: the files keep no creation time',
            {
              'created-before': 'not known on this storage',
            },
          );
        }
        if (token.created >= createdBefore) continue;
      }
      const id = joinTokenid(userid, name);
      if (lastUsedBefore !== undefined && (lastUse?.(id) ?? 0) >= lastUsedBefore) continue;
      ids.push(id);
    }
  }
  return ids.sort();
}

/**
 * The ledger's last uses, once `params.lastUsedBefore` is far enough in the
 * past for every use since it to have been reported (two intervals).
 */
async function lastUsesBefore(
  writer: Writer,
  params: RevokeFilter,
): Promise<(tokenid: string) => number | undefined> {
  const ledger = writer.lastUses();
  const settled = Math.floor(Date.now() / 1000) - 2 * Math.ceil(ledger.intervalMs / 1000);
  if ((params.lastUsedBefore ?? 0) > settled) {
    throw new ApiError(400, 'last-used-before is too recent: uses since may not be recorded yet', {
      'last-used-before': `at most ${settled} (two report intervals ago)`,
    });
  }
  return ledger.lookup();
}

/**
 * With the tokens in the database, the users having a token the comment and
 * creation criteria may take, by a query rather than a look at every token;
 * null where the tokens are the config's own.
 */
function usersToLookAt(config: UserConfig, filter: RevokeFilter): string[] | null {
  const query = tokenQueryOf(config);
  if (query === null) return null;
  return query.usersWithTokensMatching({
    ...(filter.comment === undefined ? {} : { glob: filter.comment }),
    ...(filter.createdBefore === undefined ? {} : { createdBefore: filter.createdBefore }),
  });
}

/** As one delete per token would be; without a users list, User.Modify (it reaches everyone's). */
function authorizeRevoke(caller: Caller, params: RevokeFilter, config: UserConfig): void {
  requireCriterion(params);
  if (params.users === undefined) requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
  // Every owner of a token the filter may take (last uses aside: the most it could take).
  const owners = new Set(
    params.users ??
      usersToLookAt(config, params) ??
      tokensMatching(config, params).map((id) => id.slice(0, id.indexOf('!'))),
  );
  for (const userid of owners) {
    requireSelfOrUserModify(config, caller, userid);
    requireRootForRoot(config, caller, userid);
  }
}

const parameters: ParameterSchema = {
  type: 'object',
  properties: {
    users: schema.list,
    comment: schema.text,
    'created-before': schema.expire,
    'last-used-before': schema.expire,
  },
};

export const revokeTokens = write({
  name: 'token.revoke',
  summary:
    'every token of the given users, whose comment matches a pattern, made before a time, not used since a time (each given), as one change',
  parameters,
  fromApi: (input: Raw): RevokeFilter => {
    const filter: RevokeFilter = {};
    const users = splitList(input.users);
    if (users !== undefined) filter.users = users;
    if (typeof input.comment === 'string') filter.comment = input.comment;
    if (typeof input['created-before'] === 'number') filter.createdBefore = input['created-before'];
    if (typeof input['last-used-before'] === 'number') {
      filter.lastUsedBefore = input['last-used-before'];
    }
    return filter;
  },
  parse: (raw: Raw): RevokeFilter => {
    const filter: RevokeFilter = {};
    const users = optionalList(raw, 'users');
    if (users !== undefined) filter.users = users;
    const comment = optionalText(raw, 'comment');
    if (comment !== undefined) filter.comment = comment;
    const createdBefore = optionalCount(raw, 'createdBefore');
    if (createdBefore !== undefined) filter.createdBefore = createdBefore;
    const lastUsedBefore = optionalCount(raw, 'lastUsedBefore');
    if (lastUsedBefore !== undefined) filter.lastUsedBefore = lastUsedBefore;
    return filter;
  },
  authorize: authorizeRevoke,
  revokedTokens: (result: Revoked) => result.revoked,
  async run(writer, params): Promise<Revoked> {
    const lastUse =
      params.lastUsedBefore === undefined ? undefined : await lastUsesBefore(writer, params);
    const revoked = await writer.changeTokens(
      (config) => {
        const ids = tokensMatching(config, params, lastUse);
        const taken = new Set(ids);
        for (const id of ids) {
          const at = id.indexOf('!');
          config.users.get(id.slice(0, at))?.tokens.delete(id.slice(at + 1));
        }
        removeAclEntriesWhere(config, (kind, id) => kind === 'tokens' && taken.has(id));
        return ids;
      },
      {
        secretsToDelete: (ids) => ids,
        changesMoreThanTokens: (config) =>
          hasTokenAclEntries(config, new Set(tokensMatching(config, params, lastUse))),
      },
    );
    return { revoked };
  },
});
