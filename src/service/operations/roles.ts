/** Roles: PVE's /access/roles. Anyone may read them; changing needs Sys.Modify on /access. */
import { accessConfigOrDefault } from '../../config/access-control.js';
import { addRole, updateRole as changeRole, removeRole } from '../../config/roles.js';
import type { UserConfig } from '../../config/types.js';
import {
  flagOf,
  list,
  type ParameterSchema,
  type Raw,
  schema,
  splitList,
  text,
} from '../params.js';
import { type Caller, requirePrivileges } from '../rules.js';
import { anyone, noParameters, read, write } from './operation.js';

/** A role as GET /access/roles answers it: privileges comma separated, `special` when built in. */
export interface RoleInfo {
  roleid: string;
  privs: string;
  special?: 1;
}

function roleInfo(roleid: string, privileges: Iterable<string>, builtIn: boolean): RoleInfo {
  return { roleid, privs: [...privileges].sort().join(','), ...(builtIn ? { special: 1 } : {}) };
}

const roleParameters: ParameterSchema = {
  type: 'object',
  required: ['roleid'],
  properties: { roleid: schema.roleid },
};

const sysModify = (caller: Caller, _params: unknown, config: UserConfig) =>
  requirePrivileges(config, caller, '/access', ['Sys.Modify']);

export const listRoles = read({
  name: 'role.list',
  summary: 'every role, built in and custom, with its privileges',
  ...noParameters,
  authorize: anyone,
  run(config) {
    const access = accessConfigOrDefault();
    const builtIn = [...access.roles].map(([id, privs]) => roleInfo(id, privs, true));
    const custom = [...config.roles].map(([id, privs]) => roleInfo(id, privs, false));
    return [...builtIn, ...custom].sort((a, b) => a.roleid.localeCompare(b.roleid));
  },
});

export const createRole = write({
  name: 'role.create',
  summary: 'a custom role',
  parameters: {
    type: 'object',
    required: ['roleid'],
    properties: { roleid: schema.roleid, privs: schema.list },
  },
  fromApi: (input: Raw) => ({
    roleid: input.roleid as string,
    privs: splitList(input.privs) ?? [],
  }),
  parse: (raw: Raw) => ({ roleid: text(raw, 'roleid'), privs: list(raw, 'privs') }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => {
      addRole(config, params.roleid, params.privs);
    });
    return null;
  },
});

export const updateRole = write({
  name: 'role.update',
  summary: "a custom role's privileges (replaced, or with append added to)",
  parameters: {
    type: 'object',
    required: ['roleid', 'privs'],
    properties: { roleid: schema.roleid, privs: schema.list, append: schema.flag },
  },
  fromApi: (input: Raw) => ({
    roleid: input.roleid as string,
    privs: splitList(input.privs) ?? [],
    append: flagOf(input.append) ?? false,
  }),
  parse: (raw: Raw) => ({
    roleid: text(raw, 'roleid'),
    privs: list(raw, 'privs'),
    append: raw.append === true,
  }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => {
      changeRole(config, params.roleid, params.privs, { append: params.append });
    });
    return null;
  },
});

export const deleteRole = write({
  name: 'role.delete',
  summary: 'a custom role and the ACL entries granting it',
  parameters: roleParameters,
  fromApi: (input: Raw) => ({ roleid: input.roleid as string }),
  parse: (raw: Raw) => ({ roleid: text(raw, 'roleid') }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => removeRole(config, params.roleid));
    return null;
  },
});
