/** Group names to ids, from /etc/group (Node has no getgrnam). */
import { readFileSync } from 'node:fs';

export function resolveGroupId(group: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync(groupFile, 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new Error(`no such group: ${group}`);
}
