/**
 * Back to Proxmox VE: our user.cfg written in PVE's dialect, whose token line
 * has no ENABLE field and nothing of what token-shadow adds (a token's
 * allowed-ips and rotation grace). What PVE cannot hold is never widened into
 * something it would grant: a disabled token is written as expired long ago,
 * and each field that is left out is said, once per token.
 */
import { encodeText } from './encoding.js';
import type { ConfigWarning, UserConfig } from './types.js';
import { writeUserConfig } from './write.js';

/** A user.cfg for Proxmox VE, and what it could not carry. */
export interface ExportedUserConfig {
  text: string;
  /** One per token and field left out or changed (`line` is the exported text's line). */
  warnings: ConfigWarning[];
}

/** Epoch second 1: long past, so PVE refuses the token as it refuses any expired one. */
const EXPIRED = 1;

export function exportPveUserConfig(config: UserConfig): ExportedUserConfig {
  const warnings: ConfigWarning[] = [];
  const lines = writeUserConfig(config).split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] as string;
    if (!line.startsWith('token:')) continue;
    const tokenid = line.split(':')[1] ?? '';
    const bang = tokenid.indexOf('!');
    const token = config.users.get(tokenid.slice(0, bang))?.tokens.get(tokenid.slice(bang + 1));
    if (token === undefined) continue;
    const warn = (message: string) => warnings.push({ line: index + 1, message });
    let expire = token.expire;
    if (!token.enable) {
      expire = EXPIRED;
      warn(`token ${tokenid} is disabled: written as expired (Proxmox VE has no enable flag)`);
    }
    if (token.allowedIps) {
      warn(`token ${tokenid}: allowed-ips ${token.allowedIps} left out (Proxmox VE has none)`);
    }
    if (token.graceUntil) {
      warn(`token ${tokenid}: the rotation grace left out (its previous secret is not exported)`);
    }
    lines[index] =
      `token:${tokenid}:${expire}:${token.privsep ? 1 : 0}:${encodeText(token.comment)}:`;
  }
  return { text: lines.join('\n'), warnings };
}
