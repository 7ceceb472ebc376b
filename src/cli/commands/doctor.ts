/**
 * `tokenctl doctor`: one line per check, exit 1 when any check FAILs. With
 * --fix it first repairs what it can and lists each change, then checks again.
 */
import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { fixDeployment, runDoctor, worst } from '../doctor.js';
import { ExitCode } from '../exit.js';

export function registerDoctorCommand(program: Command, cli: Cli): void {
  program
    .command('doctor')
    .description('check the modes and owners of the deployment files')
    .option('--fix', 'repair modes, owners, a broken page and stale locks, saying what changed')
    .action(
      cli.action(async (ctx, options: { fix?: boolean }) => {
        const changes = options.fix ? await fixDeployment(ctx.settings) : null;
        // A target it could not repair changed nothing: not an audited change.
        const fixed = changes?.filter((c) => c.failed !== true) ?? [];
        if (fixed.length > 0) {
          await ctx.recordChange('doctor.fix', {
            fixed: fixed.map((c) => `${c.name} ${c.path}: ${c.change}`),
          });
        }
        const checks = await runDoctor(ctx.settings);
        const status = worst(checks.map((check) => check.status));
        if (changes !== null && ctx.format === 'text') {
          ctx.cli.io.stdout(
            changes.length === 0
              ? 'nothing to fix\n'
              : changes
                  .map(
                    (c) =>
                      `${c.failed ? 'could not fix' : 'fixed'} ${c.name} ${c.path}: ${c.change}\n`,
                  )
                  .join(''),
          );
        }
        const data = changes === null ? checks : { changes, checks };
        ctx.printList(
          checks,
          [
            { header: 'STATUS', cell: (c) => c.status },
            { header: 'CHECK', cell: (c) => c.name },
            { header: 'PATH', cell: (c) => c.path },
            { header: 'DETAIL', cell: (c) => c.detail },
          ],
          data,
        );
        if (status === 'FAIL') ctx.cli.exitCode = ExitCode.FAILURE;
      }),
    );
}
