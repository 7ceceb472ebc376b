/**
 * The in-memory shape of user.cfg. Plain data with Maps, so that callers can
 * read it directly; changes should go through the helpers in this folder, which
 * keep references (tokens, group members, ACL entries) consistent.
 */

export interface UserEntry {
  enable: boolean;
  /** Epoch seconds; 0 means never. */
  expire: number;
  firstname: string;
  lastname: string;
  email: string;
  comment: string;
  /** Two-factor key ids of the old format, kept verbatim. */
  keys: string;
  /** Keyed by token name (the part after '!'). */
  tokens: Map<string, TokenEntry>;
}

/** An API token's metadata in user.cfg (its secret is only in token.shadow). */
export interface TokenEntry {
  enable: boolean;
  /** Epoch seconds; 0 means never. */
  expire: number;
  /** Privilege separation: true limits the token to its own ACL entries. */
  privsep: boolean;
  comment: string;
  /**
   * Where its requests may come from (src/config/allowed-ips.ts, canonical);
   * absent or '' for anywhere. Not in Proxmox's model.
   */
  allowedIps?: string;
  /**
   * Until when (epoch seconds) the secret before the last rotation still
   * works; absent or 0 for no grace. Not in Proxmox's model.
   */
  graceUntil?: number;
  /**
   * When it was made (epoch seconds): known in the token database (src/store),
   * absent in user.cfg, which keeps no creation time. Not in Proxmox's model.
   */
  created?: number;
}

/** A group of user.cfg and its members. */
export interface GroupEntry {
  comment: string;
  /** User ids. A user's groups are derived from here, as PVE does. */
  members: Set<string>;
}

/**
 * A resource pool. Its members are VMs (/vms/ID) and storages (/storage/ID);
 * an ACL entry on /pool/NAME applies to them. Nesting is in the name
 * ('a/b' is a child of 'a'), up to three levels, as in PVE.
 */
export interface PoolEntry {
  comment: string;
  /** VM ids; a VM belongs to at most one pool. */
  vms: Set<number>;
  /** Storage ids; a storage may be in several pools. */
  storage: Set<string>;
}

/** Role id to its propagate flag, for one user, group or token at one path. */
export type AclRoles = Map<string, boolean>;

/** The ACL entries at one path: roles of users, groups and tokens, each with its propagate flag. */
export interface AclNode {
  users: Map<string, AclRoles>;
  /** Keyed by group id, without the `@`. */
  groups: Map<string, AclRoles>;
  tokens: Map<string, AclRoles>;
}

/** The whole of user.cfg, parsed: users with their tokens, groups, roles, pools and the ACL. */
export interface UserConfig {
  users: Map<string, UserEntry>;
  groups: Map<string, GroupEntry>;
  /** Custom roles only; built-in roles come from the access-control configuration. */
  roles: Map<string, Set<string>>;
  /** Keyed by normalized path. */
  acl: Map<string, AclNode>;
  /** Keyed by pool id ('a', 'a/b'); every parent of a nested pool is here too. */
  pools: Map<string, PoolEntry>;
}

/** A line of user.cfg that was skipped, and why. */
export type ConfigWarning = { line: number; message: string };

/** An empty configuration. */
export function createUserConfig(): UserConfig {
  return {
    users: new Map(),
    groups: new Map(),
    roles: new Map(),
    acl: new Map(),
    pools: new Map(),
  };
}

export function newUserEntry(fields: Partial<Omit<UserEntry, 'tokens'>> = {}): UserEntry {
  return {
    enable: fields.enable ?? true,
    expire: fields.expire ?? 0,
    firstname: fields.firstname ?? '',
    lastname: fields.lastname ?? '',
    email: fields.email ?? '',
    comment: fields.comment ?? '',
    keys: fields.keys ?? '',
    tokens: new Map(),
  };
}

export function newAclNode(): AclNode {
  return { users: new Map(), groups: new Map(), tokens: new Map() };
}

/** The roles of one user, group or token at one path, created empty when missing. */
export function aclEntryOf(
  config: UserConfig,
  path: string,
  kind: keyof AclNode,
  id: string,
): AclRoles {
  let node = config.acl.get(path);
  if (!node) {
    node = newAclNode();
    config.acl.set(path, node);
  }
  let entry = node[kind].get(id);
  if (!entry) {
    entry = new Map();
    node[kind].set(id, entry);
  }
  return entry;
}
