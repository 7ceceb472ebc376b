/**
 * Between the token database and the files Proxmox speaks: a parsed user.cfg
 * (ours, or PVE's through importPveUserConfig) and a token.shadow map become
 * rows, and rows go back into a user.cfg and a token.shadow map for
 * writeUserConfig / serializeShadow. The files stay the exchange format; the
 * database holds nothing they cannot say except a token's creation time (a
 * token's policy travels too: allowed-ips and grace on its user.cfg line, the
 * previous secret's hash under previousSecretId in token.shadow).
 */
import type { TokenEntry, UserConfig } from '../config/types.js';
import { previousSecretId } from '../ids.js';
import type { TokenRow } from './token-database.js';

/**
 * Every token of `config` as a row, with its hash from `shadow` ('' when it has
 * none: such a token authenticates nobody, as in the files). `created` is
 * given (the files do not keep it; 0 = unknown).
 */
export function tokenRowsOf(
  config: UserConfig,
  shadow: ReadonlyMap<string, string>,
  created = 0,
): TokenRow[] {
  const rows: TokenRow[] = [];
  for (const [userid, user] of config.users) {
    for (const [name, token] of user.tokens) {
      const id = `${userid}!${name}`;
      rows.push(
        rowOf(id, userid, token, {
          hash: shadow.get(id) ?? '',
          previousHash: shadow.get(previousSecretId(id)) ?? '',
          created,
        }),
      );
    }
  }
  return rows;
}

/** A token's row from its metadata and secrets ('' for none). */
export function rowOf(
  id: string,
  userid: string,
  token: TokenEntry,
  secrets: { hash: string; previousHash: string; created: number },
): TokenRow {
  return {
    id,
    userid,
    hash: secrets.hash,
    enable: token.enable,
    expire: token.expire,
    privsep: token.privsep,
    comment: token.comment,
    created: secrets.created,
    ...(token.allowedIps ? { allowedIps: token.allowedIps } : {}),
    ...(token.graceUntil ? { graceUntil: token.graceUntil } : {}),
    ...(secrets.previousHash ? { previousHash: secrets.previousHash } : {}),
  };
}

/** A row's metadata as user.cfg's model holds a token (its creation time too, when known). */
export function entryOf(row: TokenRow): TokenEntry {
  return {
    enable: row.enable,
    expire: row.expire,
    privsep: row.privsep,
    comment: row.comment,
    ...(row.allowedIps ? { allowedIps: row.allowedIps } : {}),
    ...(row.graceUntil ? { graceUntil: row.graceUntil } : {}),
    ...(row.created ? { created: row.created } : {}),
  };
}

/**
 * A copy of `config` whose tokens are exactly `rows` (rows of users it does
 * not have are skipped and returned), and the token.shadow map of their hashes.
 */
export function filesOf(
  config: UserConfig,
  rows: Iterable<TokenRow>,
): { config: UserConfig; shadow: Map<string, string>; orphans: string[] } {
  const users = new Map(
    [...config.users].map(([id, user]) => [id, { ...user, tokens: new Map<string, TokenEntry>() }]),
  );
  const shadow = new Map<string, string>();
  const orphans: string[] = [];
  for (const row of rows) {
    const user = users.get(row.userid);
    if (user === undefined) {
      orphans.push(row.id);
      continue;
    }
    const name = row.id.slice(row.userid.length + 1);
    user.tokens.set(name, entryOf(row));
    if (row.hash !== '') shadow.set(row.id, row.hash);
    if (row.previousHash) shadow.set(previousSecretId(row.id), row.previousHash);
  }
  return { config: { ...config, users }, shadow, orphans };
}
