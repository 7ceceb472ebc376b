/**
 * Piscina worker: hashes and verifies secrets off the event loop. argon2 comes
 * from node-argon2, which runs on libuv's thread pool (see HashPool on sizing);
 * crypt(3) runs synchronously here through the addon's crypt_r.
 */
import argon2 from 'argon2';
import { loadAddon } from '../native.js';
import { type Argon2Params, hashKind, legacyPurpose } from './params.js';

export type HashTask =
  | { op: 'hash'; secret: string; params: Argon2Params }
  | { op: 'verify'; hash: string; secret: string }
  /** Answered at once: the thread has loaded this module (HashPool.close waits for it). */
  | { op: 'ping' };

export default async function run(task: HashTask): Promise<string | boolean> {
  if (task.op === 'ping') return true;
  if (task.op === 'hash') {
    return argon2.hash(task.secret, { type: argon2.argon2id, ...task.params });
  }
  switch (hashKind(task.hash)) {
    case 'argon2':
      try {
        return await argon2.verify(task.hash, task.secret);
      } catch {
        return false; // a malformed argon2 string verifies nothing
      }
    case 'sha256-crypt':
    case 'sha512-crypt':
    case 'yescrypt':
      return loadAddon(legacyPurpose(task.hash)).cryptVerify(task.secret, task.hash);
    default:
      return false;
  }
}
