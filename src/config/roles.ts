/**
 * Changing custom roles. Built-in roles belong to the access-control
 * configuration and cannot be changed here.
 */

import { ConfigError, quote } from '../errors.js';
import type { AccessControlConfig } from './access-control.js';
import { accessConfigOrDefault } from './access-control.js';
import { removeRoleFromAcl } from './acl.js';
import { isRoleId } from './syntax.js';
import type { UserConfig } from './types.js';

function checkPrivileges(access: AccessControlConfig, privileges: Iterable<string>): Set<string> {
  const set = new Set<string>();
  for (const privilege of privileges) {
    if (typeof privilege !== 'string' || !access.privileges.has(privilege)) {
      throw new ConfigError('invalid', `invalid privilege ${quote(String(privilege))}`);
    }
    set.add(privilege);
  }
  return set;
}

function customRole(config: UserConfig, roleid: string, access: AccessControlConfig): Set<string> {
  if (access.roles.has(roleid)) {
    throw new ConfigError('invalid', `built-in role ${quote(roleid)} cannot be changed`);
  }
  const role = config.roles.get(roleid);
  if (!role) throw new ConfigError('not-found', `no such role ${quote(String(roleid))}`);
  return role;
}

/** True when the role is built in or defined in `config`. */
export function roleExists(
  config: UserConfig,
  roleid: string,
  access: AccessControlConfig = accessConfigOrDefault(),
): boolean {
  return access.roles.has(roleid) || config.roles.has(roleid);
}

/** Adds a custom role. As in PVE, the 'PVE' prefix is reserved for built-in roles. */
export function addRole(
  config: UserConfig,
  roleid: string,
  privileges: Iterable<string> = [],
  access: AccessControlConfig = accessConfigOrDefault(),
): Set<string> {
  if (typeof roleid !== 'string' || !isRoleId(roleid)) {
    throw new ConfigError('invalid', `invalid role id ${quote(String(roleid))}`);
  }
  if (/^PVE/i.test(roleid)) {
    throw new ConfigError('invalid', `role id ${quote(roleid)} uses the reserved prefix 'PVE'`);
  }
  if (roleExists(config, roleid, access)) {
    throw new ConfigError('exists', `role ${quote(roleid)} exists`);
  }
  const set = checkPrivileges(access, privileges);
  config.roles.set(roleid, set);
  return set;
}

/** Replaces a custom role's privileges, or with `append` adds to them. */
export function updateRole(
  config: UserConfig,
  roleid: string,
  privileges: Iterable<string>,
  options: { append?: boolean; access?: AccessControlConfig } = {},
): Set<string> {
  const access = options.access ?? accessConfigOrDefault();
  const role = customRole(config, roleid, access);
  const set = checkPrivileges(access, privileges);
  if (!options.append) role.clear();
  for (const privilege of set) role.add(privilege);
  return role;
}

/**
 * Removes a custom role and the ACL entries that grant it. (PVE leaves those
 * entries behind, and drops them with a warning when it next reads the file.)
 */
export function removeRole(
  config: UserConfig,
  roleid: string,
  access: AccessControlConfig = accessConfigOrDefault(),
): void {
  customRole(config, roleid, access);
  config.roles.delete(roleid);
  removeRoleFromAcl(config, roleid);
}
