/**
 * user.cfg as etcd entries and back. An entry is the canonical line(s) the
 * existing writer produces for it (a user, a token, a group, a role, the ACL
 * lines of one path), keyed by its id; the file is those lines in the
 * writer's order. Reusing writeUserConfig and parseUserConfig keeps one
 * definition of the format, and makes "what changed" a comparison of lines.
 */
import { parseUserConfig } from '../config/parse.js';
import type { ConfigWarning, UserConfig } from '../config/types.js';
import { type WriteOptions, writeUserConfig } from '../config/write.js';
import type { EntryKind } from './keys.js';

/** Kind -> id -> text, for the user.cfg kinds. */
export type ConfigEntries = Map<string, string>;

/** `kind/id` of one line of canonical user.cfg, or null for blank lines. */
function keyOfLine(line: string): string | null {
  const colon = line.indexOf(':');
  if (colon < 0) return null;
  const kind = line.slice(0, colon);
  const rest = line.slice(colon + 1);
  const field = rest.slice(0, rest.indexOf(':'));
  switch (kind) {
    case 'user':
    case 'token':
    case 'group':
    case 'role':
      return `${kind}/${field}`;
    case 'acl': {
      // acl:<propagate>:<path>:...: the path is the third field.
      const afterPropagate = rest.slice(rest.indexOf(':') + 1);
      return `acl/${afterPropagate.slice(0, afterPropagate.indexOf(':'))}`;
    }
    default:
      return null;
  }
}

/**
 * The entries of a config: `kind/id` -> its canonical line(s). Without its
 * tokens (`tokens: false`) when they live in the token database.
 */
export function configToEntries(config: UserConfig, options: WriteOptions = {}): ConfigEntries {
  const entries: ConfigEntries = new Map();
  for (const line of writeUserConfig(config, options).split('\n')) {
    const key = keyOfLine(line);
    if (key === null) continue;
    const before = entries.get(key);
    entries.set(key, before === undefined ? line : `${before}\n${line}`);
  }
  return entries;
}

const ORDER: readonly EntryKind[] = ['user', 'group', 'role', 'acl'];

/** user.cfg text from entries, users each followed by their tokens, as the writer orders it. */
export function entriesToText(entries: ReadonlyMap<string, string>): string {
  const byKind = new Map<string, Array<[string, string]>>();
  for (const [key, text] of entries) {
    const kind = key.slice(0, key.indexOf('/'));
    const list = byKind.get(kind) ?? [];
    list.push([key.slice(kind.length + 1), text]);
    byKind.set(kind, list);
  }
  const tokens = (byKind.get('token') ?? []).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const sections: string[][] = [];
  for (const kind of ORDER) {
    const list = (byKind.get(kind) ?? []).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const lines: string[] = [];
    for (const [id, text] of list) {
      lines.push(text);
      if (kind === 'user') {
        for (const [tokenid, line] of tokens) if (tokenid.startsWith(`${id}!`)) lines.push(line);
      }
    }
    if (lines.length > 0) sections.push(lines);
  }
  return sections.map((lines) => `${lines.join('\n')}\n`).join('\n');
}

export function entriesToConfig(entries: ReadonlyMap<string, string>): {
  config: UserConfig;
  warnings: ConfigWarning[];
} {
  return parseUserConfig(entriesToText(entries));
}
