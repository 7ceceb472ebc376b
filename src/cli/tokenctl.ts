#!/usr/bin/env node
/**
 * tokenctl: the API's operations for the administrator on the host, run
 * locally as root@pam through the same operation table as the daemons
 * (src/service), on the same files, announcing every change on the page.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cli, type CliIo, PROCESS_IO } from './context.js';
import { failureOf } from './exit.js';
import { buildProgram, expandPveumAlias } from './program.js';

/** Runs tokenctl with `argv` (the arguments after the script) and returns the exit code. */
export async function main(argv: string[], io: CliIo = PROCESS_IO): Promise<number> {
  const cli = new Cli(io);
  try {
    await buildProgram(cli).parseAsync(expandPveumAlias(argv), { from: 'user' });
    return cli.exitCode;
  } catch (error) {
    const failure = failureOf(error);
    if (failure.message !== null) io.stderr(`tokenctl: ${failure.message}\n`);
    return failure.exitCode;
  }
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  // `tokenctl token list | head -1` closes the pipe early: not an error worth a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  // exitCode rather than exit(): let stdout drain; nothing else keeps the process alive.
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
