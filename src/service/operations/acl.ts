/** ACL entries: PVE's /access/acl. Reading needs Sys.Audit on /access, changing Permissions.Modify on the path. */
import { type AclRequest, listAcl, setAcl } from '../../config/acl.js';
import { normalizeAclPath } from '../../config/syntax.js';
import { ApiError, quote } from '../../errors.js';
import { aclInfo } from '../answers.js';
import {
  defined,
  flagOf,
  list,
  optionalFlag,
  optionalList,
  type Raw,
  schema,
  splitList,
  text,
} from '../params.js';
import { requirePrivileges } from '../rules.js';
import { noParameters, read, write } from './operation.js';

export const readAcl = read({
  name: 'acl.read',
  summary: 'every ACL entry',
  ...noParameters,
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, '/access', ['Sys.Audit']),
  run: (config) => listAcl(config).map(aclInfo),
});

/**
 * `path`, if it is an ACL path; else a 400 before any privilege is checked (a
 * path no ACL can name has no privileges, so the check would answer 403 and
 * hide the caller's mistake).
 */
function aclPath(path: string): string {
  if (normalizeAclPath(path) === null) {
    throw new ApiError(400, `invalid ACL path ${quote(path)}`, { path: 'invalid' });
  }
  return path;
}

type AclParams = AclRequest & {
  path: string;
  roles: string[];
  users?: string[];
  groups?: string[];
  tokens?: string[];
};

export const updateAcl = write({
  name: 'acl.update',
  summary: 'grant or (with delete) take away roles on a path',
  parameters: {
    type: 'object',
    required: ['path', 'roles'],
    properties: {
      path: schema.text,
      roles: schema.list,
      users: schema.list,
      groups: schema.list,
      tokens: schema.list,
      propagate: schema.flag,
      delete: schema.flag,
    },
  },
  fromApi: (input: Raw): AclParams => ({
    path: aclPath(input.path as string),
    roles: splitList(input.roles) ?? [],
    ...defined({
      users: splitList(input.users),
      groups: splitList(input.groups),
      tokens: splitList(input.tokens),
      propagate: flagOf(input.propagate),
      delete: flagOf(input.delete),
    }),
  }),
  parse: (raw: Raw): AclParams => ({
    path: aclPath(text(raw, 'path')),
    roles: list(raw, 'roles'),
    ...defined({
      users: optionalList(raw, 'users'),
      groups: optionalList(raw, 'groups'),
      tokens: optionalList(raw, 'tokens'),
      propagate: optionalFlag(raw, 'propagate'),
      delete: optionalFlag(raw, 'delete'),
    }),
  }),
  authorize: (caller, params, config) =>
    requirePrivileges(config, caller, params.path, ['Permissions.Modify']),
  async run(writer, params) {
    await writer.change((config) => setAcl(config, params.path, params));
    return null;
  },
});
