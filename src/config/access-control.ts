/**
 * What a product decides about access control, kept apart from how the daemons
 * store things, as Proxmox's proxmox-access-control crate does: the
 * AccessControlConfig (privileges, roles, who is superuser), set once per
 * process with init() (Proxmox VE's when none is), and the
 * AccessControlBackend a UserConfigStore runs on every parsed configuration.
 * It lives in config/ because parsing user.cfg needs the privilege names.
 */

import { AccessControlNotInitialisedError } from '../errors.js';
import { PVE_BUILTIN_ROLES, PVE_PRIVILEGES } from './privileges.js';
import type { UserConfig } from './types.js';
import { newUserEntry } from './types.js';

/** A product's access-control rules: its privilege names, built-in roles, superuser and NoAccess role. */
export interface AccessControlConfig {
  /** Every privilege name a role may contain. */
  readonly privileges: ReadonlySet<string>;
  /** Built-in roles: cannot be redefined, changed or removed through user.cfg. */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>;
  /** Has every privilege on every path, whatever the ACL says. */
  isSuperuser(authid: string): boolean;
  /** The role that, at the deciding path, takes every privilege away; null for none. */
  readonly noAccessRole: string | null;
}

/** What a UserConfigStore runs on every freshly parsed configuration. */
export interface AccessControlBackend {
  /** Called on every freshly parsed configuration, e.g. to add users that must exist. */
  initUserConfig(config: UserConfig): void;
}

/** Proxmox's superuser, `root@pam`: every privilege everywhere, re-added on every read of user.cfg. */
export const SUPERUSER = 'root@pam';

/** Proxmox VE's configuration: its privileges and built-in roles, `root@pam` as superuser. */
export const PVE_ACCESS_CONTROL: AccessControlConfig = Object.freeze({
  privileges: new Set(PVE_PRIVILEGES),
  roles: PVE_BUILTIN_ROLES,
  isSuperuser: (authid: string) => authid === SUPERUSER,
  noAccessRole: 'NoAccess',
});

/** Re-adds `root@pam`, as PVE does on every read. */
export const DEFAULT_ACCESS_BACKEND: AccessControlBackend = Object.freeze({
  initUserConfig(config: UserConfig): void {
    if (!config.users.has(SUPERUSER)) config.users.set(SUPERUSER, newUserEntry());
  },
});

let currentConfig: AccessControlConfig | null = null;

/** Sets this process's access-control configuration. A later call replaces the earlier one. */
export function init(config: AccessControlConfig): void {
  currentConfig = config;
}

/** The configuration set by init(); AccessControlNotInitialisedError before it. */
export function accessConfig(): AccessControlConfig {
  if (!currentConfig) throw new AccessControlNotInitialisedError('configuration');
  return currentConfig;
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
