/** The caller's effective privileges: PVE's GET /access/permissions. */
import { permissionsTree } from '../../access/permissions.js';
import { currentEpochSeconds } from '../../config/active.js';
import { ParameterError } from '../../errors.js';
import { isAuthid, parseAuthid } from '../../ids.js';
import { defined, optionalText, type Raw, schema } from '../params.js';
import { requirePrivileges } from '../rules.js';
import { read } from './operation.js';

export const readPermissions = read({
  name: 'permissions.read',
  summary: "the caller's privileges, or another's with Sys.Audit on /access",
  parameters: { type: 'object', properties: { path: schema.text, userid: schema.text } },
  fromApi: (input: Raw) =>
    checkTarget(
      defined({
        path: input.path as string | undefined,
        userid: input.userid as string | undefined,
      }),
    ),
  parse: (raw: Raw) =>
    checkTarget(defined({ path: optionalText(raw, 'path'), userid: optionalText(raw, 'userid') })),
  authorize(caller, params, config) {
    const target = params.userid ?? caller.authid;
    const own = target === caller.authid || parseAuthid(target).userid === caller.authid;
    if (!own) requirePrivileges(config, caller, '/access', ['Sys.Audit']);
  },
  run(config, caller, params) {
    const tree = permissionsTree(config, params.userid ?? caller, {
      now: currentEpochSeconds(),
      ...(params.path ? { paths: [params.path] } : {}),
    });
    if (params.path === undefined) return tree;
    return { [params.path]: tree[params.path] ?? {} };
  },
});

function checkTarget(params: { path?: string; userid?: string }) {
  if (params.userid !== undefined && !isAuthid(params.userid)) {
    throw new ParameterError('invalid userid', { userid: 'invalid format' });
  }
  return params;
}
