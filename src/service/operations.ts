/**
 * The service layer's operation table: every operation of the API, tokenctl
 * and `npm start` is one entry here, with its name, the JSON Schema of its API
 * parameters, the conversion and validation of its params, its privilege rule
 * and its `run`. The HTTP routes, the manager's dispatch and tokenctl all go
 * through these entries, so a rule or a parameter is written once.
 *
 * Who writes user.cfg and token.shadow: whoever runs a `write` operation. In
 * daemon mode that is the manager alone: the API workers run the `read`
 * operations on their cached config and forward writes to the manager over its
 * socket, checking the same rule first so that a refusal needs no round trip.
 * `tokenctl`, run by root on the host, runs the write operations in its own
 * process as root@pam and writes the files directly, under the same file
 * locks and generation bumps, so running daemons see its changes at once.
 * In multi-host mode both write to etcd instead, and each host's sync agent
 * writes its files (src/cluster).
 *
 * A privilege rule is a function of the caller, the params and the config it
 * is checked against. A write checks it again inside the file lock, on the
 * fresh config, before every look at the config its run takes.
 */
import { readAcl, updateAcl } from './operations/acl.js';
import { createGroup, deleteGroup, listGroups, updateGroup } from './operations/groups.js';
import { revokeLeakedToken } from './operations/leaked-secrets.js';
import type { Operation } from './operations/operation.js';
import { readPermissions } from './operations/permissions.js';
import { createPool, deletePool, listPools, updatePool } from './operations/pools.js';
import { revokeTokens } from './operations/revoke-tokens.js';
import { createRole, deleteRole, listRoles, updateRole } from './operations/roles.js';
import {
  createToken,
  deleteToken,
  listTokens,
  readToken,
  rotateToken,
  updateToken,
} from './operations/tokens.js';
import { createUser, deleteUser, listUsers, readUser, updateUser } from './operations/users.js';

export * from './operations/acl.js';
export * from './operations/groups.js';
export * from './operations/leaked-secrets.js';
export {
  type Caller,
  type LastUses,
  type Operation,
  type ReadOperation,
  runRead,
  runWrite,
  type Stores,
  type WriteContext,
  type WriteOperation,
  Writer,
} from './operations/operation.js';
export * from './operations/permissions.js';
export * from './operations/pools.js';
export * from './operations/revoke-tokens.js';
export * from './operations/roles.js';
export * from './operations/tokens.js';
export * from './operations/users.js';

/**
 * Every operation, by name: what the manager's socket accepts. Each entry's
 * params are its own type; the table only promises objects, which every
 * operation's parse makes and every rule and run takes back (method
 * parameters are bivariant, so no cast is needed).
 */
export const OPERATIONS: ReadonlyMap<string, Operation<object>> = new Map(
  (
    [
      readPermissions,
      listUsers,
      readUser,
      listTokens,
      readToken,
      readAcl,
      listGroups,
      listPools,
      createUser,
      updateUser,
      deleteUser,
      createToken,
      updateToken,
      rotateToken,
      deleteToken,
      revokeTokens,
      revokeLeakedToken,
      updateAcl,
      createGroup,
      updateGroup,
      createPool,
      updatePool,
      deletePool,
      deleteGroup,
      listRoles,
      createRole,
      updateRole,
      deleteRole,
    ] satisfies Operation<object>[]
  ).map((op) => [op.name, op]),
);
