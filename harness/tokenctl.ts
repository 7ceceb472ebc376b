/**
 * tokenctl run in the test's own process (its `main`, output captured) on a
 * deployment directory laid out as the daemon harness makes it (etc/ and
 * run/ below it), and the one request the cluster tests judge a host by.
 */
import path from 'node:path';
import { main } from '../src/cli/tokenctl.js';

export interface TokenctlRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function tokenctlIn(dir: string, ...args: string[]): Promise<TokenctlRun> {
  let stdout = '';
  let stderr = '';
  const code = await main(
    ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run'), ...args],
    {
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
    },
  );
  return { code, stdout, stderr };
}

/** The HTTP status a host's API answers `header` with (200, 401, or 503 when fenced). */
export async function versionStatus(api: { url: string }, header: string): Promise<number> {
  const reply = await fetch(`${api.url}/version`, { headers: { authorization: header } });
  await reply.arrayBuffer();
  return reply.status;
}
