/**
 * What pools add to the roles at a member's path, as compile_acl_path in
 * PVE 9.1's PVE/RPCEnvironment.pm does:
 *
 * - the roles a user or token has at /pool/NAME, found by the ordinary walk
 *   (so a nested pool inherits what propagates from its parents, and NoAccess
 *   there counts), apply to every member of NAME: '/vms/ID', '/storage/ID';
 * - NoAccess from the ordinary ACL at the member's path stays as it is;
 *   otherwise NoAccess from any of the member's pools replaces everything;
 * - otherwise each pool role is added unless the ordinary ACL already set it,
 *   and never propagates (a member has no children).
 *
 * A storage may be in several pools: their roles are united, as in PVE.
 */
import type { AclRoles } from '../config/types.js';

/**
 * `roles` (the ordinary roles at a member's path) with the roles of `pools`
 * (the pools that have it as a member) applied. `rolesAtPool` gives the
 * caller's ordinary roles at a '/pool/NAME' path.
 */
export function withPoolRoles(
  pools: readonly string[],
  roles: AclRoles,
  rolesAtPool: (poolPath: string) => AclRoles,
  noAccessRole: string | null,
): AclRoles {
  if (pools.length === 0) return roles;
  if (noAccessRole !== null && roles.has(noAccessRole)) return roles;
  const fromPools = new Set<string>();
  for (const poolid of pools) {
    for (const role of rolesAtPool(`/pool/${poolid}`).keys()) fromPools.add(role);
  }
  if (fromPools.size === 0) return roles;
  if (noAccessRole !== null && fromPools.has(noAccessRole)) return new Map([[noAccessRole, false]]);
  const merged: AclRoles = new Map(roles);
  for (const role of fromPools) if (!merged.has(role)) merged.set(role, false);
  return merged;
}
