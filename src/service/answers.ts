/** What the operations answer about users and tokens, in Proxmox VE's shapes (flags as 0/1). */
import type { AclEntry } from '../config/acl.js';
import { groupsOfUser } from '../config/groups.js';
import type { TokenEntry, UserConfig, UserEntry } from '../config/types.js';
import type { LastUse } from '../usage/notes.js';

const flag = (value: boolean): 0 | 1 => (value ? 1 : 0);

/**
 * A token in Proxmox's shape, plus what Proxmox has not, only where set (its
 * clients ignore fields they do not know): `allowed-ips`, and `grace-until`
 * while the previous secret of a rotation still works.
 */
export function tokenInfo(token: TokenEntry): {
  enable: 0 | 1;
  expire: number;
  privsep: 0 | 1;
  comment: string;
  'allowed-ips'?: string;
  'grace-until'?: number;
} {
  return {
    enable: flag(token.enable),
    expire: token.expire,
    privsep: flag(token.privsep),
    comment: token.comment,
    ...(token.allowedIps ? { 'allowed-ips': token.allowedIps } : {}),
    ...(token.graceUntil ? { 'grace-until': token.graceUntil } : {}),
  };
}

export type TokenInfo = ReturnType<typeof tokenInfo>;

/** A token's last use; undefined for never (or not known here). */
export type LastUsedLookup = (tokenid: string) => LastUse | undefined;

/** The fields withLastUsed adds, each absent when not known. */
export interface LastUsedFields {
  /** Epoch second of the last use. */
  'last-used'?: number;
  /** The client's address of the last use. */
  'last-used-source'?: string;
  /** The host whose workers recorded the last use (multi-host mode). */
  'last-used-host'?: string;
}

/**
 * Adds `last-used`, `last-used-source` and `last-used-host`, each absent when
 * not known (never used, an older record, single-host mode): additional
 * fields, which PVE clients ignore.
 */
export function withLastUsed<T extends object>(
  info: T,
  use: LastUse | undefined,
): T & LastUsedFields {
  if (use === undefined) return info;
  return {
    ...info,
    'last-used': use.seconds,
    ...(use.source === undefined ? {} : { 'last-used-source': use.source }),
    ...(use.host === undefined ? {} : { 'last-used-host': use.host }),
  };
}

/** A token with its new secret: the only answer that ever carries a secret. */
export interface CreatedToken {
  'full-tokenid': string;
  info: TokenInfo;
  /** The secret, shown once. */
  value: string;
}

export function userInfo(config: UserConfig, userid: string, user: UserEntry, full: boolean) {
  return {
    userid,
    enable: flag(user.enable),
    expire: user.expire,
    firstname: user.firstname,
    lastname: user.lastname,
    email: user.email,
    comment: user.comment,
    groups: groupsOfUser(config, userid).join(','),
    ...(full
      ? {
          tokens: [...user.tokens].map(([tokenid, token]) => ({ tokenid, ...tokenInfo(token) })),
        }
      : {}),
  };
}

export function aclInfo(entry: AclEntry) {
  return {
    path: entry.path,
    type: entry.type,
    ugid: entry.ugid,
    roleid: entry.roleid,
    propagate: flag(entry.propagate),
  };
}
