/**
 * What reading one user.cfg line needs in either dialect (parse.ts for ours,
 * pve-dialect.ts for Proxmox VE's): its fields, the configuration read so far
 * and a way to warn about it.
 */
import { quote } from '../errors.js';
import { isAuthid, isTokenid } from '../ids.js';
import type { AccessControlConfig } from './access-control.js';
import { REMOVED_PRIVILEGES } from './privileges.js';
import type { ConfigWarning, UserConfig } from './types.js';

/** Why the whole line was skipped; undefined when it was used (perhaps in part). */
export type Problem = string | undefined;

export interface LineContext {
  readonly config: UserConfig;
  readonly access: AccessControlConfig;
  readonly fields: string[];
  /**
   * How many fields are complete: followed by a ':'. Every line we write ends
   * with one, so a line cut short (a crash, a full disk, a bad copy) has fewer
   * than its type needs, and its last field may be a prefix of what it was.
   */
  readonly complete: number;
  /**
   * The tokens live in the token database, not in this file: an ACL entry of
   * a token of a known user is kept although no token line names it.
   */
  readonly tokensElsewhere?: boolean;
  /** Warns about this line; `detail` must already quote untrusted values. */
  warn(detail: string): void;
}

export function field(fields: readonly string[], index: number): string {
  return fields[index] ?? '';
}

/** Splits at ':', trims every field and drops trailing empty ones, like Perl's split. */
export function splitFields(line: string): string[] {
  const fields = line.split(':').map((part) => part.trim());
  while (fields.length > 0 && fields[fields.length - 1] === '') fields.pop();
  return fields;
}

/** The line for a warning, with the key list of a user line hidden: it may hold OTP secrets. */
function safeLine(fields: readonly string[], line: string): string {
  if (fields[0] === 'user' && field(fields, 8) !== '') {
    return `${fields.slice(0, 8).join(':')}:***:`;
  }
  return line;
}

/** The context of one line (already trimmed), its warnings going to `warnings`. */
export function lineContext(
  config: UserConfig,
  access: AccessControlConfig,
  line: string,
  lineNumber: number,
  warnings: ConfigWarning[],
  tokensElsewhere = false,
): LineContext {
  const fields = splitFields(line);
  return {
    config,
    access,
    fields,
    tokensElsewhere,
    complete: line.split(':').length - 1,
    warn(detail) {
      const shown = quote(safeLine(fields, line), 80);
      warnings.push({ line: lineNumber, message: `line ${lineNumber}: ${detail}: ${shown}` });
    },
  };
}

/** Adds the privileges that exist to a role, warning about the others (PVE 8's VM.Monitor too). */
export function addPrivileges(
  context: LineContext,
  roleid: string,
  names: readonly string[],
  privileges: Set<string>,
): void {
  for (const privilege of names) {
    if (context.access.privileges.has(privilege)) {
      privileges.add(privilege);
    } else {
      const removed = REMOVED_PRIVILEGES.get(privilege);
      const what = `${quote(privilege)} of role ${quote(roleid)}`;
      context.warn(
        removed === undefined
          ? `ignoring unknown privilege ${what}`
          : `ignoring privilege ${what}: ${removed}`,
      );
    }
  }
}

/** A user id, not a token id. */
export function isUserid(value: string): boolean {
  return isAuthid(value) && !isTokenid(value);
}
