/** Changing groups and memberships. A user's groups are the groups listing it. */
import { ConfigError, quote } from '../errors.js';
import { removeAclEntriesWhere } from './acl.js';
import { isGroupId, isWellFormedText } from './syntax.js';
import type { GroupEntry, UserConfig } from './types.js';

/** The fields of a group that can be set. */
export interface GroupFields {
  comment?: string;
  /** User ids; every one must exist. */
  members?: Iterable<string>;
}

function checkGroupFields(groupid: string, fields: GroupFields): string[] | undefined {
  if (fields.comment !== undefined) {
    if (typeof fields.comment !== 'string' || !isWellFormedText(fields.comment)) {
      throw new ConfigError(
        'invalid',
        `comment of group ${quote(groupid)} must be well-formed text`,
      );
    }
  }
  return fields.members === undefined ? undefined : [...fields.members];
}

function checkMembers(config: UserConfig, members: readonly string[]): void {
  for (const member of members) {
    if (!config.users.has(member)) {
      throw new ConfigError('not-found', `no such user ${quote(String(member))}`);
    }
  }
}

/** The group, or ConfigError 'not-found'. */
export function getGroup(config: UserConfig, groupid: string): GroupEntry {
  const group = config.groups.get(groupid);
  if (!group) throw new ConfigError('not-found', `no such group ${quote(String(groupid))}`);
  return group;
}

/** Adds a group; ConfigError 'exists' when it does. */
export function addGroup(
  config: UserConfig,
  groupid: string,
  fields: GroupFields = {},
): GroupEntry {
  if (typeof groupid !== 'string' || !isGroupId(groupid)) {
    throw new ConfigError('invalid', `invalid group id ${quote(String(groupid))}`);
  }
  const members = checkGroupFields(groupid, fields) ?? [];
  if (config.groups.has(groupid)) throw new ConfigError('exists', `group ${quote(groupid)} exists`);
  checkMembers(config, members);
  const group: GroupEntry = { comment: fields.comment ?? '', members: new Set(members) };
  config.groups.set(groupid, group);
  return group;
}

/** Changes the comment and, when given, replaces the member list. */
export function updateGroup(config: UserConfig, groupid: string, changes: GroupFields): GroupEntry {
  const group = getGroup(config, groupid);
  const members = checkGroupFields(groupid, changes);
  if (members !== undefined) {
    checkMembers(config, members);
    group.members = new Set(members);
  }
  if (changes.comment !== undefined) group.comment = changes.comment;
  return group;
}

/** Removes a group and its ACL entries; its users stay. */
export function removeGroup(config: UserConfig, groupid: string): void {
  getGroup(config, groupid);
  config.groups.delete(groupid);
  removeAclEntriesWhere(config, (kind, id) => kind === 'groups' && id === groupid);
}

/** The groups listing `userid`, sorted. */
export function groupsOfUser(config: UserConfig, userid: string): string[] {
  const groups: string[] = [];
  for (const [groupid, group] of config.groups) if (group.members.has(userid)) groups.push(groupid);
  return groups.sort();
}

/** Puts a user in exactly `groups`, or with `append` in them too; every group must exist. */
export function setUserGroups(
  config: UserConfig,
  userid: string,
  groups: readonly string[],
  append: boolean,
): void {
  for (const groupid of groups) getGroup(config, groupid);
  if (!append) for (const group of config.groups.values()) group.members.delete(userid);
  for (const groupid of groups) config.groups.get(groupid)?.members.add(userid);
}
