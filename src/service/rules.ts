/**
 * The privilege rules the operations are built from, with Proxmox VE's
 * semantics. Each throws PermissionError naming the path and privileges that
 * were missing, never what the caller does hold.
 */
import { checkPrivileges } from '../access/permissions.js';
import { SUPERUSER } from '../config/access-control.js';
import { canonicalAllowedIps, onlyNarrows } from '../config/allowed-ips.js';
import type { UserConfig } from '../config/types.js';
import { PermissionError } from '../errors.js';
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

/**
 * The host's superuser, acting through tokenctl (or `npm start`'s bootstrap)
 * on the files directly: every rule lets it through, whatever state user.cfg
 * is in (root@pam disabled, expired, its ACLs gone), so it can always repair.
 * Recognised by object identity: no request, header or socket line can
 * produce it.
 */
export const HOST_ROOT: Caller = Object.freeze({
  authid: SUPERUSER,
  userid: SUPERUSER,
  tokenName: null,
});

/** Privilege separation of a token caller (a token missing from the config counts as separated). */
function separated(config: UserConfig, caller: Caller): boolean {
  if (caller.tokenName === null) return false;
  return config.users.get(caller.userid)?.tokens.get(caller.tokenName)?.privsep ?? true;
}

/** root@pam itself, a token of root@pam without privilege separation, or host root. */
export function actsAsRoot(config: UserConfig, caller: Caller): boolean {
  if (caller === HOST_ROOT) return true;
  return caller.userid === SUPERUSER && !separated(config, caller);
}

/**
 * Deviation from PVE: there, User.Modify on /access/groups lets a user disable
 * root@pam or mint `root@pam!x` without privilege separation, which is
 * superuser. Here only root@pam (or host root) changes root@pam, its tokens
 * or its groups.
 */
export function requireRootForRoot(config: UserConfig, caller: Caller, userid: string): void {
  if (userid === SUPERUSER && !actsAsRoot(config, caller)) {
    throw new PermissionError(
      `Permission check failed (only ${SUPERUSER} may change ${SUPERUSER})`,
    );
  }
}

/**
 * Deviation from PVE: a caller with privilege separation never hands out more
 * than it holds, so it may not create a token without privilege separation,
 * lift a token's (its own included), or get a new secret for a token without
 * it (the secret would be the user's full power).
 */
export function requireNoEscalation(
  config: UserConfig,
  caller: Caller,
  target: { userid: string; tokenName: string },
  grants: { privsep?: boolean | undefined; secret?: boolean; allowedIps?: string | undefined },
): void {
  if (!separated(config, caller)) return;
  const existing = config.users.get(target.userid)?.tokens.get(target.tokenName);
  const lifts = grants.privsep === false;
  const exposes = grants.secret === true && existing !== undefined && !existing.privsep;
  if (lifts || exposes) {
    throw new PermissionError(
      'Permission check failed (a token with privilege separation cannot create, lift or rotate a token without it)',
    );
  }
  // Its own source restriction only narrows: a leaked secret must not free itself.
  const own = caller.userid === target.userid && caller.tokenName === target.tokenName;
  if (own && grants.allowedIps !== undefined && existing !== undefined) {
    if (!onlyNarrows(existing.allowedIps ?? '', canonicalAllowedIps(grants.allowedIps))) {
      throw new PermissionError(
        'Permission check failed (a token with privilege separation cannot widen its own allowed-ips)',
      );
    }
  }
}

/** PermissionError unless `caller` holds the privileges (all, or any with `any`) on `path`. */
export function requirePrivileges(
  config: UserConfig,
  caller: Caller,
  path: string,
  privs: readonly string[],
  any = false,
): void {
  if (caller === HOST_ROOT) return;
  if (!checkPrivileges(config, caller, path, privs, { any })) {
    throw new PermissionError(`Permission check failed (${path}, ${privs.join(any ? '|' : ', ')})`);
  }
}

/** 'self' as PVE means it: the authenticated user itself (a token is never its user). */
export function isSelf(caller: Caller, userid: string): boolean {
  return caller.authid === userid;
}

/** A user manages its own tokens; anyone else needs User.Modify. */
export function requireSelfOrUserModify(config: UserConfig, caller: Caller, userid: string): void {
  if (caller === HOST_ROOT) return;
  if (!isSelf(caller, userid)) requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
}

export const USER_AUDIT = ['Sys.Audit', 'User.Modify'] as const;

/** Whether `caller` sees every user, not only itself. */
export function canAuditUsers(config: UserConfig, caller: Caller): boolean {
  if (caller === HOST_ROOT) return true;
  return checkPrivileges(config, caller, ACCESS_GROUPS, USER_AUDIT, { any: true });
}
