/**
 * `tokenctl audit`: the audit trail of every change (src/audit/trail.ts),
 * filtered by time, token, actor and operation; `tokenctl audit verify`
 * checks its hash chain (exit 1 and where it breaks when a record was
 * removed or altered). In multi-host mode both read the cluster's trail in
 * etcd (every change once, in order, with its revision: src/cluster/audit.ts);
 * `--local` reads this host's own trail, which also holds the refusals.
 */
import { type Command, Option } from 'commander';
import type { AuditRecord } from '../../audit/trail.js';
import { ClusterTrail } from '../../cluster/audit.js';
import { createEtcdClient } from '../../cluster/client.js';
import { ClusterKeys } from '../../cluster/keys.js';
import { loadClusterSettings } from '../../cluster/settings.js';
import { AuditError } from '../../errors.js';
import { parseDuration } from '../../service/durations.js';
import { tokenidArgument } from '../arguments.js';
import type { Cli, CliContext } from '../context.js';
import { parseExpire } from '../dates.js';

interface AuditOptions {
  since?: number;
  token?: string;
  actor?: string;
  op?: string;
  local?: boolean;
}

/** Runs `fn` on the cluster's trail in multi-host mode; null in single-host mode or with --local. */
async function onClusterTrail<T>(
  ctx: CliContext,
  local: boolean | undefined,
  fn: (trail: ClusterTrail) => Promise<T>,
): Promise<{ value: T } | null> {
  const settings = local ? null : loadClusterSettings(ctx.settings.configDir);
  if (settings === null) return null;
  const client = createEtcdClient(settings);
  try {
    const keys = new ClusterKeys(settings.cluster);
    const trail = new ClusterTrail(client, keys, { deadlineMs: settings.leaseSeconds * 2000 });
    return { value: await fn(trail) };
  } finally {
    client.close();
  }
}

/** `--since`: a date (YYYY-MM-DD, epoch seconds) or a duration back from now (`2h`, `7d`). */
function sinceArgument(value: string): number {
  if (/^\d+(\.\d+)?\s*[a-z]+$/i.test(value)) return Date.now() - parseDuration(value);
  return parseExpire(value) * 1000;
}

function matches(record: AuditRecord, options: AuditOptions): boolean {
  if (options.since !== undefined && Date.parse(record.time) < options.since) return false;
  if (options.token !== undefined && record.target !== options.token) return false;
  if (options.actor !== undefined && record.actor !== options.actor) return false;
  if (options.op !== undefined && record.op !== options.op) return false;
  return true;
}

export function registerAuditCommands(program: Command, cli: Cli): void {
  const audit = program
    .command('audit')
    .description('the audit trail of every change: who, from where, what, how it ended')
    .addOption(
      new Option(
        '--since <when>',
        'from a date (YYYY-MM-DD) or a duration ago (e.g. 24h)',
      ).argParser(sinceArgument),
    )
    .addOption(
      new Option('--token <tokenid>', 'changes of one token').argParser(
        (value) => tokenidArgument(value).authid,
      ),
    )
    .option('--actor <id>', "one actor's changes (an id, or 'host root')")
    .option('--op <name>', 'one operation, e.g. token.delete')
    .option('--local', "multi-host mode: this host's own trail (with refusals), not the cluster's")
    .action(
      cli.action(async (ctx, options: AuditOptions) => {
        const rows: AuditRecord[] = [];
        const cluster = await onClusterTrail(ctx, options.local, (trail) => trail.records());
        if (cluster !== null) {
          rows.push(...cluster.value.filter((record) => matches(record, options)));
        } else {
          for await (const record of ctx.audit().trail.records()) {
            if (matches(record, options)) rows.push(record);
          }
        }
        ctx.printList(rows, [
          ...(cluster === null
            ? []
            : [
                { header: 'REVISION', cell: (r: AuditRecord) => String(r.revision ?? '') },
                { header: 'HOST', cell: (r: AuditRecord) => r.host },
              ]),
          { header: 'SEQ', cell: (r) => String(r.seq) },
          { header: 'TIME', cell: (r) => r.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z') },
          { header: 'ACTOR', cell: (r) => r.actor },
          { header: 'SOURCE', cell: (r) => r.source },
          { header: 'OP', cell: (r) => r.op },
          { header: 'TARGET', cell: (r) => r.target ?? '' },
          { header: 'OUTCOME', cell: (r) => (r.status ? `${r.outcome} ${r.status}` : r.outcome) },
        ]);
      }),
    );

  audit
    .command('verify')
    .description('check the hash chain over every record and rotated file')
    .option('--local', "multi-host mode: this host's own trail, not the cluster's")
    .action(
      cli.action(async (ctx, options: { local?: boolean }) => {
        const cluster = await onClusterTrail(ctx, options.local, (trail) => trail.verify());
        if (cluster !== null) {
          const checked = cluster.value;
          if (!checked.ok)
            throw new AuditError('tampered', `cluster audit trail: ${checked.problem}`);
          ctx.printDone(
            checked,
            `verified ${checked.records} cluster records up to revision ${checked.revision}: the chain is whole`,
          );
          return;
        }
        const result = await ctx.audit().trail.verify();
        if (!result.ok) throw new AuditError('tampered', `audit trail: ${result.problem}`);
        ctx.printDone(
          result,
          `verified ${result.records} records in ${result.files} files: the chain is whole`,
        );
      }),
    );
}
