/**
 * Moving from Proxmox VE: its user.cfg read in its own dialect (tokens without
 * an ENABLE field) and written in ours, where every token has one.
 */
import type { AccessControlConfig } from './access-control.js';
import { type ParsedUserConfig, parseUserConfig } from './parse.js';
import { writeUserConfig } from './write.js';

/** A Proxmox VE user.cfg read in its own dialect, with what could not be taken over. */
export interface ImportedUserConfig extends ParsedUserConfig {
  /** The same configuration as token-shadow's user.cfg. */
  text: string;
}

/** Reads a Proxmox VE user.cfg (PVE's dialect: no token `enable` field), warning about what is dropped. */
export function importPveUserConfig(
  pveText: string,
  options: { access?: AccessControlConfig } = {},
): ImportedUserConfig {
  const parsed = parseUserConfig(pveText, { ...options, dialect: 'pve' });
  return { ...parsed, text: writeUserConfig(parsed.config) };
}
