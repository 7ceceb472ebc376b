/**
 * Users: PVE's /access/users. Reading oneself needs nothing; reading others
 * Sys.Audit or User.Modify on /access/groups; changing a user User.Modify,
 * and root@pam only by root@pam.
 */

import type { UserConfig } from '../../config/types.js';
import type { UserFields } from '../../config/users.js';
import * as userConfig from '../../config/users.js';
import { PermissionError } from '../../errors.js';
import { joinTokenid, parseUserid } from '../../ids.js';
import { userInfo } from '../answers.js';
import {
  defined,
  flagOf,
  type ParameterSchema,
  type Raw,
  record,
  schema,
  splitList,
  text,
} from '../params.js';
import {
  ACCESS_GROUPS,
  type Caller,
  canAuditUsers,
  isSelf,
  requirePrivileges,
  requireRootForRoot,
  USER_AUDIT,
} from '../rules.js';
import { anyone, read, write } from './operation.js';

const userModify = (caller: Caller, _params: unknown, config: UserConfig) =>
  requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
/** User.Modify, and root@pam alone changes root@pam (see requireRootForRoot). */
const userModifyNotRoot = (caller: Caller, params: { userid: string }, config: UserConfig) => {
  userModify(caller, params, config);
  requireRootForRoot(config, caller, params.userid);
};

const userFieldSchemas = {
  enable: schema.flag,
  expire: schema.expire,
  firstname: schema.text,
  lastname: schema.text,
  email: schema.text,
  comment: schema.text,
  keys: schema.text,
  groups: schema.list,
};

type UserChanges = UserFields & { groups?: string[] };

function userFieldsOf(input: Raw): UserChanges {
  return defined({
    enable: flagOf(input.enable),
    expire: input.expire as number | undefined,
    firstname: input.firstname as string | undefined,
    lastname: input.lastname as string | undefined,
    email: input.email as string | undefined,
    comment: input.comment as string | undefined,
    keys: input.keys as string | undefined,
    groups: splitList(input.groups),
  });
}

export interface UserParams {
  userid: string;
}

export const userParameters: ParameterSchema = {
  type: 'object',
  required: ['userid'],
  properties: { userid: schema.userid },
};

export const userParams = {
  fromApi: (input: Raw): UserParams => ({ userid: input.userid as string }),
  parse: (raw: Raw): UserParams => ({ userid: text(raw, 'userid') }),
};

export const listUsers = read({
  name: 'user.list',
  summary: 'every user (with Sys.Audit or User.Modify), or only oneself',
  parameters: { type: 'object', properties: { enabled: schema.flag, full: schema.flag } },
  fromApi: (input: Raw) => defined({ enabled: flagOf(input.enabled), full: flagOf(input.full) }),
  parse: (raw: Raw) =>
    defined({
      enabled: raw.enabled === undefined ? undefined : raw.enabled === true,
      full: raw.full === undefined ? undefined : raw.full === true,
    }),
  authorize: anyone,
  run(config, caller, options: { enabled?: boolean; full?: boolean }) {
    const all = canAuditUsers(config, caller);
    return [...config.users]
      .filter(([userid]) => all || userid === caller.userid)
      .filter(([, user]) => options.enabled === undefined || user.enable === options.enabled)
      .map(([userid, user]) => userInfo(config, userid, user, options.full ?? false));
  },
});

export const readUser = read({
  name: 'user.read',
  summary: 'one user with its tokens',
  parameters: userParameters,
  ...userParams,
  authorize(caller, params, config) {
    if (!isSelf(caller, params.userid) && !canAuditUsers(config, caller)) {
      throw new PermissionError(
        `Permission check failed (${ACCESS_GROUPS}, ${USER_AUDIT.join('|')})`,
      );
    }
  },
  run(config, _caller, params) {
    const user = userConfig.getUser(config, params.userid);
    const { userid: _ignored, ...info } = userInfo(config, params.userid, user, true);
    return info;
  },
});

export const createUser = write({
  name: 'user.create',
  summary: 'a new user',
  parameters: {
    type: 'object',
    required: ['userid'],
    properties: { userid: schema.userid, password: schema.text, ...userFieldSchemas },
  },
  fromApi: (input: Raw) => ({ userid: input.userid as string, fields: userFieldsOf(input) }),
  parse: (raw: Raw) => ({
    userid: text(raw, 'userid'),
    fields: record<UserChanges>(raw, 'fields'),
  }),
  authorize: userModify,
  async run(writer, params) {
    await writer.change((config) => {
      userConfig.addUser(config, parseUserid(params.userid).userid, params.fields);
    });
    return null;
  },
});

export const updateUser = write({
  name: 'user.update',
  summary: "a user's fields and groups",
  parameters: {
    type: 'object',
    required: ['userid'],
    properties: { userid: schema.userid, ...userFieldSchemas, append: schema.flag },
  },
  fromApi: (input: Raw) => ({
    userid: input.userid as string,
    changes: { ...userFieldsOf(input), ...defined({ append: flagOf(input.append) }) },
  }),
  parse: (raw: Raw) => ({
    userid: text(raw, 'userid'),
    changes: record<UserChanges & { append?: boolean }>(raw, 'changes'),
  }),
  authorize: userModifyNotRoot,
  async run(writer, params) {
    await writer.change((config) => {
      userConfig.updateUser(config, params.userid, params.changes);
    });
    return null;
  },
});

export const deleteUser = write({
  name: 'user.delete',
  summary: 'a user, its tokens and their secrets',
  parameters: userParameters,
  ...userParams,
  authorize: userModifyNotRoot,
  async run(writer, params) {
    await writer.change(
      (config) => {
        const user = userConfig.getUser(config, params.userid);
        const ids = [...user.tokens.keys()].map((name) => joinTokenid(params.userid, name));
        userConfig.removeUser(config, params.userid);
        return ids;
      },
      { secretsToDelete: (tokenids) => tokenids },
    );
    return null;
  },
});
