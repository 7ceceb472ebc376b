/**
 * What a product decides about access control, kept apart from how the daemons
 * store things, as Proxmox's proxmox-access-control crate does: the
 * AccessControlConfig (privileges, roles, who is superuser) and the
 * AccessControlBackend (hooks into the user configuration and the cache
 * generations). Both are set once per process with init() or initSeparate().
 */

import type { UserConfig } from '../config/types.js';
import { newUserEntry } from '../config/types.js';
import { AccessControlNotInitialisedError } from '../errors.js';
import { PVE_BUILTIN_ROLES, PVE_PRIVILEGES } from './privileges.js';

export interface AccessControlConfig {
  /** Every privilege name a role may contain. */
  readonly privileges: ReadonlySet<string>;
  /** Built-in roles: cannot be redefined, changed or removed through user.cfg. */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>;
  /** Has every privilege on every path, whatever the ACL says. */
  isSuperuser(authid: string): boolean;
  /** The role that, at the deciding path, takes every privilege away; null for none. */
  readonly noAccessRole: string | null;
  /** The role holding every privilege; null for none. */
  readonly adminRole: string | null;
}

export interface AccessControlBackend {
  /** Called on every freshly parsed configuration, e.g. to add users that must exist. */
  initUserConfig(config: UserConfig): void;
  /** Generation of user.cfg (users and ACLs), or null when the backend keeps no cache. */
  userAndAclGeneration(): number | null;
  incrementUserAndAclGeneration(): number | null;
  /** Generation of the token shadow file, or null when the backend keeps no cache. */
  tokenShadowGeneration(): number | null;
  incrementTokenShadowGeneration(): number | null;
}

export const SUPERUSER = 'root@pam';

/** Proxmox VE's configuration: its privileges and built-in roles, root@pam as superuser. */
export const PVE_ACCESS_CONTROL: AccessControlConfig = Object.freeze({
  privileges: new Set(PVE_PRIVILEGES),
  roles: PVE_BUILTIN_ROLES,
  isSuperuser: (authid: string) => authid === SUPERUSER,
  noAccessRole: 'NoAccess',
  adminRole: 'Administrator',
});

/** Re-adds root@pam, as PVE does on every read, and keeps no generations. */
export const DEFAULT_ACCESS_BACKEND: AccessControlBackend = Object.freeze({
  initUserConfig(config: UserConfig): void {
    if (!config.users.has(SUPERUSER)) config.users.set(SUPERUSER, newUserEntry());
  },
  userAndAclGeneration: () => null,
  incrementUserAndAclGeneration: () => null,
  tokenShadowGeneration: () => null,
  incrementTokenShadowGeneration: () => null,
});

let currentConfig: AccessControlConfig | null = null;
let currentBackend: AccessControlBackend | null = null;

/** Sets both from one object. A later call replaces the earlier one. */
export function init(both: AccessControlConfig & AccessControlBackend): void {
  initSeparate(both, both);
}

export function initSeparate(config: AccessControlConfig, backend: AccessControlBackend): void {
  currentConfig = config;
  currentBackend = backend;
}

export function accessConfig(): AccessControlConfig {
  if (!currentConfig) throw new AccessControlNotInitialisedError('configuration');
  return currentConfig;
}

export function accessBackend(): AccessControlBackend {
  if (!currentBackend) throw new AccessControlNotInitialisedError('backend');
  return currentBackend;
}

/** The configuration set by init(), or PVE's when none was: pure helpers need no init. */
export function accessConfigOrDefault(): AccessControlConfig {
  return currentConfig ?? PVE_ACCESS_CONTROL;
}

/** A role's privileges, built-in or custom; undefined when the role does not exist. */
export function rolePrivileges(
  config: UserConfig,
  roleid: string,
  access: AccessControlConfig = accessConfigOrDefault(),
): ReadonlySet<string> | undefined {
  return access.roles.get(roleid) ?? config.roles.get(roleid);
}
