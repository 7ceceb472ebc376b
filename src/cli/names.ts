/**
 * User and group names for ids, from /etc/passwd and /etc/group (Node has no
 * getpwuid), so that doctor can say `root:token-shadow` rather than `0:998`.
 */
import { readFileSync } from 'node:fs';

function nameById(file: string, id: number): string {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return String(id);
  }
  for (const line of text.split('\n')) {
    const [name, , uidOrGid] = line.split(':');
    if (name && uidOrGid === String(id)) return name;
  }
  return String(id);
}

export function userName(uid: number, passwdFile = '/etc/passwd'): string {
  return nameById(passwdFile, uid);
}

export function groupName(gid: number, groupFile = '/etc/group'): string {
  return nameById(groupFile, gid);
}
