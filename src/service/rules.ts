/**
 * The privilege rules the operations are built from, with Proxmox VE's
 * semantics. Each throws ApiError(403) naming the path and privileges that
 * were missing, never what the caller does hold.
 */
import { checkPrivileges } from '../access/permissions.js';
import type { UserConfig } from '../config/types.js';
import { ApiError } from '../errors.js';
import type { AuthidParts } from '../ids.js';

/** Where PVE checks the user and group privileges. */
export const ACCESS_GROUPS = '/access/groups';

/**
 * Who asks: the authenticated user or token, parsed once (by the header
 * parser in the API, from the socket request in the manager, root@pam in
 * tokenctl). A token's privilege separation is read from the config the rule
 * is checked against.
 */
export type Caller = AuthidParts;

/** 403 unless `caller` holds the privileges (all, or any with `any`) on `path`. */
export function requirePrivileges(
  config: UserConfig,
  caller: Caller,
  path: string,
  privs: readonly string[],
  any = false,
): void {
  if (!checkPrivileges(config, caller, path, privs, { any })) {
    throw new ApiError(403, `Permission check failed (${path}, ${privs.join(any ? '|' : ', ')})`);
  }
}

/** 'self' as PVE means it: the authenticated user itself (a token is never its user). */
export function isSelf(caller: Caller, userid: string): boolean {
  return caller.authid === userid;
}

/** A user manages its own tokens; anyone else needs User.Modify. */
export function requireSelfOrUserModify(config: UserConfig, caller: Caller, userid: string): void {
  if (!isSelf(caller, userid)) requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
}

export const USER_AUDIT = ['Sys.Audit', 'User.Modify'] as const;

/** Whether `caller` sees every user, not only itself. */
export function canAuditUsers(config: UserConfig, caller: Caller): boolean {
  return checkPrivileges(config, caller, ACCESS_GROUPS, USER_AUDIT, { any: true });
}
