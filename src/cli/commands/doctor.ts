/** `tokenctl doctor`: one line per check, exit 1 when any check FAILs. */
import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { runDoctor, worst } from '../doctor.js';
import { ExitCode } from '../exit.js';

export function registerDoctorCommand(program: Command, cli: Cli): void {
  program
    .command('doctor')
    .description('check the modes and owners of the deployment files')
    .action(
      cli.action(async (ctx) => {
        const checks = await runDoctor(ctx.settings);
        const status = worst(checks.map((check) => check.status));
        ctx.printList(checks, [
          { header: 'STATUS', cell: (c) => c.status },
          { header: 'CHECK', cell: (c) => c.name },
          { header: 'PATH', cell: (c) => c.path },
          { header: 'DETAIL', cell: (c) => c.detail },
        ]);
        if (status === 'FAIL') ctx.cli.exitCode = ExitCode.FAILURE;
      }),
    );
}
