/**
 * `tokenctl generations`: the shared page's counters by name. When a change
 * does not seem to reach the daemons, this shows whether it was announced.
 */
import type { Command } from 'commander';
import { GenerationPageError } from '../../errors.js';
import { GenerationPage } from '../../generations/page.js';
import { Slot, type SlotName } from '../../generations/slots.js';
import type { Cli, CliContext } from '../context.js';
import { ExitCode } from '../exit.js';

/** Reads every named slot without creating or changing anything. */
export function readSlots(pagePath: string): Record<SlotName, number> {
  const page = GenerationPage.open(pagePath, { create: false, readOnly: true });
  try {
    const slots = {} as Record<SlotName, number>;
    for (const name of Object.keys(Slot) as SlotName[]) slots[name] = page.load(Slot[name]);
    return slots;
  } finally {
    page.close();
  }
}

function show(ctx: CliContext): void {
  const { pagePath, caching } = ctx.settings;
  if (!caching) {
    ctx.printRecord({ page: pagePath, caching: false, reason: 'caching is turned off' }, [
      ['page', pagePath],
      ['caching', 'off: turned off in the settings'],
    ]);
    return;
  }
  let slots: Record<SlotName, number>;
  try {
    slots = readSlots(pagePath);
  } catch (error) {
    if (!(error instanceof GenerationPageError)) throw error;
    if (error.problem === 'permission-denied') throw error;
    const reason =
      error.problem === 'not-found'
        ? 'the page does not exist yet (the manager or the first tokenctl change creates it)'
        : error.message;
    ctx.printRecord({ page: pagePath, caching: false, reason }, [
      ['page', pagePath],
      ['caching', `off: ${reason}`],
    ]);
    // No page yet is normal on a fresh host; an unusable one is a failure.
    if (error.problem !== 'not-found') ctx.cli.exitCode = ExitCode.FAILURE;
    return;
  }
  ctx.printRecord({ page: pagePath, caching: true, slots }, [
    ['page', pagePath],
    ...Object.entries(slots).map(([name, value]) => [name, String(value)] as const),
  ]);
}

export function registerGenerationsCommand(program: Command, cli: Cli): void {
  program
    .command('generations')
    .description('show the generation page and its named counters')
    .action(cli.action(async (ctx) => show(ctx)));
}
