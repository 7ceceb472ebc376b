/**
 * API tokens: PVE's /access/users/{userid}/token. A user manages their own
 * tokens; others' need User.Modify; root@pam's only root@pam; and no token
 * ever gets more than its creator holds (requireNoEscalation).
 */

import { hasTokenAclEntries } from '../../config/acl.js';
import { currentEpochSeconds } from '../../config/active.js';
import type { UserConfig } from '../../config/types.js';
import type { TokenFields } from '../../config/users.js';
import * as userConfig from '../../config/users.js';
import { ConfigError, ParameterError } from '../../errors.js';
import { joinTokenid } from '../../ids.js';
import { type CreatedToken, type TokenInfo, tokenInfo } from '../answers.js';
import {
  defined,
  flagOf,
  type ParameterSchema,
  type Raw,
  record,
  schema,
  text,
} from '../params.js';
import {
  type Caller,
  requireNoEscalation,
  requireRootForRoot,
  requireSelfOrUserModify,
} from '../rules.js';
import { read, type Writer, write } from './operation.js';
import { userParameters, userParams } from './users.js';

const ownTokensOrUserModify = (caller: Caller, params: { userid: string }, config: UserConfig) =>
  requireSelfOrUserModify(config, caller, params.userid);
/**
 * A token write: the user's own tokens or User.Modify, root@pam's tokens only
 * by root@pam, and never more than the caller holds (requireNoEscalation).
 */
function tokenWrite(
  grants: (params: never) => {
    privsep?: boolean | undefined;
    secret?: boolean;
    allowedIps?: string | undefined;
  },
) {
  return (caller: Caller, params: TokenParams, config: UserConfig) => {
    requireSelfOrUserModify(config, caller, params.userid);
    requireRootForRoot(config, caller, params.userid);
    requireNoEscalation(config, caller, params, grants(params as never));
  };
}

const tokenFieldSchemas = {
  expire: schema.expire,
  privsep: schema.flag,
  comment: schema.text,
  enable: schema.flag,
  /** Not Proxmox's: comma-separated addresses and CIDRs its requests may come from; '' anywhere. */
  'allowed-ips': { type: 'string', maxLength: 8192 },
};

/** A rotation's grace, in seconds (Proxmox's unit for durations); at most 30 days. */
export const MAX_GRACE_SECONDS = 30 * 86_400;
const graceSchema = { type: 'integer', minimum: 0, maximum: MAX_GRACE_SECONDS } as const;

function tokenFieldsOf(input: Raw): TokenFields {
  return defined({
    enable: flagOf(input.enable),
    expire: input.expire as number | undefined,
    privsep: flagOf(input.privsep),
    comment: input.comment as string | undefined,
    allowedIps: input['allowed-ips'] as string | undefined,
  });
}

/** The grace asked for, in seconds (0: none, Proxmox's immediate cut-off). */
function graceOf(params: { grace?: number }): number {
  const grace = params.grace ?? 0;
  if (!Number.isSafeInteger(grace) || grace < 0 || grace > MAX_GRACE_SECONDS) {
    throw new ParameterError(`grace must be 0 to ${MAX_GRACE_SECONDS} seconds`);
  }
  return grace;
}

export interface TokenParams {
  userid: string;
  tokenName: string;
}

/** PVE calls the token's name `tokenid` in its API paths. */
export const tokenParameters: ParameterSchema = {
  type: 'object',
  required: ['userid', 'tokenid'],
  properties: { userid: schema.userid, tokenid: schema.tokenName },
};

export function tokenParamsOf(input: Raw): TokenParams {
  return { userid: input.userid as string, tokenName: input.tokenid as string };
}

export function parseTokenParams(raw: Raw): TokenParams {
  return { userid: text(raw, 'userid'), tokenName: text(raw, 'tokenName') };
}

/** What every operation on one token shares: its parameters and its privilege rule. */
const onToken = {
  parameters: tokenParameters,
  fromApi: tokenParamsOf,
  parse: parseTokenParams,
  authorize: ownTokensOrUserModify,
};

/** The token's parameters with `fields` besides (what a create or update may set). */
function tokenParametersWith(fields: ParameterSchema['properties']): ParameterSchema {
  return { ...tokenParameters, properties: { ...tokenParameters.properties, ...fields } };
}

/**
 * A new secret for `tokenid`, answered once. Without a grace the old one
 * stops working everywhere at once (Proxmox's regenerate); with `grace`
 * seconds it keeps working until then, and only it: the grace is written to
 * user.cfg before the secrets move (so the old secret is never refused in
 * between), and a rotation ends any earlier grace's secret in the same write.
 * The token is confirmed under user.cfg's lock after the secret is stored: a
 * delete that ran meanwhile wins, and the secret we wrote is removed again
 * rather than left behind as an orphan.
 */
async function newSecret(writer: Writer, tokenid: string, grace = 0): Promise<CreatedToken> {
  if (grace > 0) {
    const until = currentEpochSeconds() + grace;
    await writer.changeTokens((config) => userConfig.setGrace(config, tokenid, until));
  }
  const value = await writer.newSecret(tokenid, grace > 0);
  let token: ReturnType<typeof userConfig.getToken>;
  try {
    token = await writer.changeTokens((config) => {
      const current = userConfig.getToken(config, tokenid);
      // No previous secret is stored any more: a grace left in user.cfg would only mislead.
      return grace === 0 && current.graceUntil ? userConfig.setGrace(config, tokenid, 0) : current;
    });
  } catch (error) {
    await writer.deleteSecret(tokenid);
    throw error;
  }
  return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
}

export const listTokens = read({
  name: 'token.list',
  summary: "a user's tokens",
  parameters: userParameters,
  ...userParams,
  authorize: ownTokensOrUserModify,
  run(config, _caller, params) {
    return [...userConfig.getUser(config, params.userid).tokens].map(([tokenid, token]) => ({
      tokenid,
      ...tokenInfo(token),
    }));
  },
});

export const readToken = read({
  name: 'token.read',
  summary: 'one token (never its secret)',
  ...onToken,
  run(config, _caller, params) {
    return tokenInfo(userConfig.getToken(config, joinTokenid(params.userid, params.tokenName)));
  },
});

/**
 * The secret is stored first and the token added to user.cfg second: a crash
 * in between leaves an unusable orphan secret, never a token without one.
 */
export const createToken = write({
  name: 'token.create',
  summary: 'a new token and its secret, answered once',
  ...onToken,
  parameters: tokenParametersWith(tokenFieldSchemas),
  fromApi: (input: Raw) => ({ ...tokenParamsOf(input), fields: tokenFieldsOf(input) }),
  parse: (raw: Raw) => ({ ...parseTokenParams(raw), fields: record<TokenFields>(raw, 'fields') }),
  // A new token is separated unless asked otherwise (addToken's default).
  authorize: tokenWrite((p: { fields: TokenFields }) => ({
    privsep: p.fields.privsep ?? true,
    allowedIps: p.fields.allowedIps,
  })),
  async run(writer, params): Promise<CreatedToken> {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    await writer.check((config) => {
      if (userConfig.getUser(config, params.userid).tokens.has(params.tokenName)) {
        throw new ConfigError('exists', `token ${tokenid} already exists`);
      }
    });
    const value = await writer.newSecret(tokenid);
    try {
      const token = await writer.changeTokens((config) =>
        userConfig.addToken(config, tokenid, params.fields),
      );
      return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
    } catch (error) {
      await writer.deleteSecret(tokenid);
      throw error;
    }
  },
});

/**
 * A token's fields; with `regenerate` (as Proxmox Backup Server offers it) also
 * a new secret, answered once like a new token's.
 */
export const updateToken = write({
  name: 'token.update',
  summary: "a token's fields, and with regenerate a new secret",
  ...onToken,
  parameters: tokenParametersWith({
    ...tokenFieldSchemas,
    regenerate: schema.flag,
    grace: graceSchema,
  }),
  fromApi: (input: Raw) => ({
    ...tokenParamsOf(input),
    changes: tokenFieldsOf(input),
    ...defined({ regenerate: flagOf(input.regenerate), grace: input.grace as number | undefined }),
  }),
  parse: (raw: Raw) => ({
    ...parseTokenParams(raw),
    changes: record<TokenFields>(raw, 'changes'),
    ...defined({
      regenerate: raw.regenerate === undefined ? undefined : raw.regenerate === true,
      grace: raw.grace as number | undefined,
    }),
  }),
  authorize: tokenWrite((p: { changes: TokenFields; regenerate?: boolean }) => ({
    privsep: p.changes.privsep,
    secret: p.regenerate === true,
    allowedIps: p.changes.allowedIps,
  })),
  async run(writer, params): Promise<TokenInfo | CreatedToken> {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    const grace = graceOf(params);
    if (grace > 0 && !params.regenerate) throw new ParameterError('grace needs regenerate');
    const token = await writer.changeTokens((config) =>
      userConfig.updateToken(config, tokenid, params.changes),
    );
    return params.regenerate ? newSecret(writer, tokenid, grace) : tokenInfo(token);
  },
});

export const rotateToken = write({
  name: 'token.rotate',
  summary:
    'a new secret for a token, answered once; the old one stops working at once, or after `grace` seconds',
  ...onToken,
  parameters: tokenParametersWith({ grace: graceSchema }),
  fromApi: (input: Raw) => ({
    ...tokenParamsOf(input),
    ...defined({ grace: input.grace as number | undefined }),
  }),
  parse: (raw: Raw) => ({
    ...parseTokenParams(raw),
    ...defined({ grace: raw.grace as number | undefined }),
  }),
  authorize: tokenWrite(() => ({ secret: true })),
  async run(writer, params: TokenParams & { grace?: number }) {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    const grace = graceOf(params);
    await writer.check((config) => userConfig.getToken(config, tokenid)); // 404 before any hashing
    return newSecret(writer, tokenid, grace);
  },
});

/** user.cfg first (the token stops being active), then the secret (one transaction on etcd). */
export const deleteToken = write({
  name: 'token.delete',
  summary: 'a token and its secret',
  ...onToken,
  authorize: tokenWrite(() => ({})),
  deletedToken: (params) => joinTokenid(params.userid, params.tokenName),
  async run(writer, params) {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    await writer.changeTokens((config) => userConfig.removeToken(config, tokenid), {
      secretsToDelete: () => [tokenid],
      // Its ACL entries go too: then user.cfg changes.
      changesMoreThanTokens: (config) => hasTokenAclEntries(config, new Set([tokenid])),
    });
    return null;
  },
});
