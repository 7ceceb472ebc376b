/** Groups: PVE's /access/groups. Reading needs Sys.Audit or Group.Allocate, changing Group.Allocate. */
import { addGroup, updateGroup as changeGroup, removeGroup } from '../../config/groups.js';
import type { UserConfig } from '../../config/types.js';
import { type Raw, schema, text } from '../params.js';
import { ACCESS_GROUPS, type Caller, requirePrivileges } from '../rules.js';
import { idAndComment, noParameters, read, write } from './operation.js';

const groupAllocate = (caller: Caller, _params: unknown, config: UserConfig) =>
  requirePrivileges(config, caller, ACCESS_GROUPS, ['Group.Allocate']);

export const listGroups = read({
  name: 'group.list',
  summary: 'every group with its members',
  ...noParameters,
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, ACCESS_GROUPS, ['Sys.Audit', 'Group.Allocate'], true),
  run(config) {
    return [...config.groups].map(([groupid, group]) => ({
      groupid,
      comment: group.comment,
      users: [...group.members].sort().join(','),
    }));
  },
});

/** What creating and changing a group share: its id and comment, and Group.Allocate. */
const groupWithComment = {
  parameters: {
    type: 'object',
    required: ['groupid'],
    properties: { groupid: schema.groupid, comment: schema.text },
  },
  ...idAndComment('groupid'),
  authorize: groupAllocate,
} as const;

export const createGroup = write({
  name: 'group.create',
  summary: 'a new group',
  ...groupWithComment,
  async run(writer, params) {
    await writer.change((config) => {
      addGroup(
        config,
        params.groupid,
        params.comment === undefined ? {} : { comment: params.comment },
      );
    });
    return null;
  },
});

/** PVE's PUT /access/groups/{groupid}: the comment only (members are set on the users). */
export const updateGroup = write({
  name: 'group.update',
  summary: "a group's comment",
  ...groupWithComment,
  async run(writer, params) {
    await writer.change((config) => {
      changeGroup(config, params.groupid, { comment: params.comment ?? '' });
    });
    return null;
  },
});

export const deleteGroup = write({
  name: 'group.delete',
  summary: 'a group and its ACL entries; its users stay',
  parameters: {
    type: 'object',
    required: ['groupid'],
    properties: { groupid: schema.groupid },
  },
  fromApi: (input: Raw) => ({ groupid: input.groupid as string }),
  parse: (raw: Raw) => ({ groupid: text(raw, 'groupid') }),
  authorize: groupAllocate,
  async run(writer, params) {
    await writer.change((config) => removeGroup(config, params.groupid));
    return null;
  },
});
