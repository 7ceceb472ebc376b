/**
 * Bulk revocation (issue 25): every token matching a filter - of these users,
 * whose comment matches a pattern, made before a time: every criterion given
 * must hold - removed with its secret as one
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
import { write } from './operation.js';

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

/** The ids of the tokens `filter` selects in `config`. */
export function tokensMatching(config: UserConfig, filter: RevokeFilter): string[] {
  const { users: only, comment: glob, createdBefore } = filter;
  if (only === undefined && glob === undefined && createdBefore === undefined) {
    throw new ApiError(400, 'a bulk revocation needs users, a comment pattern or created-before', {
      users: 'users, comment or created-before is required',
    });
  }
  const comment = glob === undefined ? null : globToRegExp(glob);
  // Tokens in the database: a query says which users to look at, rather than every token.
  const query = tokenQueryOf(config);
  const users =
    only ??
    (query === null
      ? [...config.users.keys()]
      : query.usersWithTokensMatching({
          ...(glob === undefined ? {} : { glob }),
          ...(createdBefore === undefined ? {} : { createdBefore }),
        }));
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
      ids.push(joinTokenid(userid, name));
    }
  }
  return ids.sort();
}

/** As one delete per token would be; without a users list, User.Modify (it reaches everyone's). */
function authorizeRevoke(caller: Caller, params: RevokeFilter, config: UserConfig): void {
  if (params.users === undefined) requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
  const owners = new Set(params.users ?? []);
  for (const id of tokensMatching(config, params)) owners.add(id.slice(0, id.indexOf('!')));
  for (const userid of owners) {
    requireSelfOrUserModify(config, caller, userid);
    requireRootForRoot(config, caller, userid);
  }
}

const parameters: ParameterSchema = {
  type: 'object',
  properties: { users: schema.list, comment: schema.text, 'created-before': schema.expire },
};

export const revokeTokens = write({
  name: 'token.revoke',
  summary:
    'every token of the given users, whose comment matches a pattern, made before a time (each given), as one change',
  parameters,
  fromApi: (input: Raw): RevokeFilter => {
    const filter: RevokeFilter = {};
    const users = splitList(input.users);
    if (users !== undefined) filter.users = users;
    if (typeof input.comment === 'string') filter.comment = input.comment;
    if (typeof input['created-before'] === 'number') filter.createdBefore = input['created-before'];
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
    return filter;
  },
  authorize: authorizeRevoke,
  revokedTokens: (result: Revoked) => result.revoked,
  async run(writer, params): Promise<Revoked> {
    const revoked = await writer.changeTokens(
      (config) => {
        const ids = tokensMatching(config, params);
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
          hasTokenAclEntries(config, new Set(tokensMatching(config, params))),
      },
    );
    return { revoked };
  },
});
