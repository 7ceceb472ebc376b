import path from 'node:path';

/** File name of the page inside whichever runtime directory applies. */
export const PAGE_FILE_NAME = 'config-versions';

/** Where root keeps the page: tmpfs, so it vanishes (and restarts at 0) on reboot. */
export const ROOT_PAGE_PATH = '/run/token-shadow/shmem/config-versions';

/**
 * The page inside a runtime directory: the one rule every process of a
 * deployment (the daemons, tokenctl, the default below) applies, so that
 * agreeing on the runtime directory is agreeing on the page.
 */
export function pagePathIn(runtimeDir: string): string {
  return path.join(runtimeDir, 'shmem', PAGE_FILE_NAME);
}

/**
 * The default page path: in systemd's `$RUNTIME_DIRECTORY` (first entry) when set,
 * the fixed /run path as root, else `$XDG_RUNTIME_DIR/token-shadow`, else the
 * configuration directory. Every process of one deployment must resolve the same
 * path, which is why daemons pass it explicitly once it is configured.
 */
export function defaultPagePath(
  configDir: string,
  env: NodeJS.ProcessEnv = process.env,
  uid: number = process.getuid?.() ?? -1,
): string {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  if (runtime) return pagePathIn(runtime);
  if (uid === 0) return ROOT_PAGE_PATH;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'token-shadow', PAGE_FILE_NAME);
  return path.join(configDir, PAGE_FILE_NAME);
}
