/**
 * A root token made the way tokenctl makes it: as the host's superuser,
 * writing the files directly under their locks (the manager and the API see
 * it at once). `npm start` prints one; tests and benchmarks use one to talk to
 * the manager, which accepts nothing without a credential.
 */
import { SUPERUSER } from '../config/access-control.js';
import { ConfigError } from '../errors.js';
import { ensureDirectories, openDeployment } from './deployment.js';
import { createToken, rotateToken, runWrite } from './operations.js';
import { HOST_ROOT } from './rules.js';
import { resolveSettings, type Settings } from './settings.js';
import { openStorageMode } from './storage-mode.js';

export interface RootToken {
  tokenid: string;
  secret: string;
  /** The Authorization header value. */
  header: string;
}

/** A fresh secret for `root@pam!NAME`: rotated when the token exists, created (without privsep) otherwise. */
export async function hostRootToken(
  settings: Settings,
  tokenName: string,
  comment: string,
): Promise<RootToken> {
  await ensureDirectories(settings);
  const deployment = openDeployment(settings, 'cli');
  const mode = await openStorageMode(deployment, 'cli');
  const storage = mode.storage;
  const params = { userid: SUPERUSER, tokenName };
  try {
    let created: { value: string };
    try {
      created = await runWrite(rotateToken, storage, HOST_ROOT, params);
    } catch (error) {
      if (!(error instanceof ConfigError && error.problem === 'not-found')) throw error;
      created = await runWrite(createToken, storage, HOST_ROOT, {
        ...params,
        fields: { privsep: false, comment },
      });
    }
    const tokenid = `${SUPERUSER}!${tokenName}`;
    return { tokenid, secret: created.value, header: `PVEAPIToken=${tokenid}=${created.value}` };
  } finally {
    await mode.close();
    await deployment.close();
  }
}

/**
 * The header of one `root@pam!NAME` token of the deployment in these
 * directories, made on first use: what test and benchmark harnesses send the
 * manager.
 */
let harnesses = 0;

export function rootCredential(
  configDir: string,
  runtimeDir: string,
  // One per harness: hosts sharing one cluster store must not rotate each other's.
  tokenName = `harness${process.pid}x${harnesses++}`,
): () => Promise<string> {
  let token: Promise<RootToken> | null = null;
  return async () => {
    const settings = resolveSettings({ configDir, runtimeDir, workers: 1, hashThreads: 1 });
    token ??= hostRootToken(settings, tokenName, 'made by a test or benchmark harness');
    return (await token).header;
  };
}
