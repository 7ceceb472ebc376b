/**
 * Bulk revocation (issue 25): every token matching a filter - of these users,
 * and/or whose comment matches a pattern - removed with its secret as one
 * change (one write of user.cfg and one of token.shadow; one etcd transaction
 * in multi-host mode), announced once. An addition beside PVE's endpoints.
 * Every token taken is checked as a single delete would be: the caller's own,
 * or User.Modify; root@pam's only by root@pam.
 */
import { hasTokenAclEntries, removeAclEntriesWhere } from '../../config/acl.js';
import type { UserConfig } from '../../config/types.js';
import { ApiError } from '../../errors.js';
import { joinTokenid } from '../../ids.js';
import {
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
  if (filter.users === undefined && filter.comment === undefined) {
    throw new ApiError(400, 'a bulk revocation needs users or a comment pattern', {
      users: 'users or comment is required',
    });
  }
  const comment = filter.comment === undefined ? null : globToRegExp(filter.comment);
  const users = filter.users ?? [...config.users.keys()];
  const ids: string[] = [];
  for (const userid of users) {
    const user = config.users.get(userid);
    if (user === undefined) continue;
    for (const [name, token] of user.tokens) {
      if (comment === null || comment.test(token.comment)) ids.push(joinTokenid(userid, name));
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
  properties: { users: schema.list, comment: schema.text },
};

export const revokeTokens = write({
  name: 'token.revoke',
  summary: 'every token of the given users and/or whose comment matches a pattern, as one change',
  parameters,
  fromApi: (input: Raw): RevokeFilter => {
    const filter: RevokeFilter = {};
    const users = splitList(input.users);
    if (users !== undefined) filter.users = users;
    if (typeof input.comment === 'string') filter.comment = input.comment;
    return filter;
  },
  parse: (raw: Raw): RevokeFilter => {
    const filter: RevokeFilter = {};
    const users = optionalList(raw, 'users');
    if (users !== undefined) filter.users = users;
    const comment = optionalText(raw, 'comment');
    if (comment !== undefined) filter.comment = comment;
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
