/**
 * `tokenctl cluster init` moves this host's user.cfg and token.shadow into
 * etcd (or, with --join, only points this host at a cluster that has them)
 * and writes cluster.json, which switches the deployment to multi-host mode
 * at the manager's next start. `tokenctl cluster status` shows every host as
 * etcd sees it: its acked revision, how far behind, its lease, and this
 * host's own fence.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { moveIntoEtcd, readClusterState } from '../../cluster/admin.js';
import { createEtcdClient } from '../../cluster/client.js';
import { ClusterKeys } from '../../cluster/keys.js';
import {
  type ClusterSettingsInput,
  clusterFilePath,
  loadClusterSettings,
  resolveClusterSettings,
} from '../../cluster/settings.js';
import { assertTlsWorks } from '../../cluster/tls-probe.js';
import { ClusterError } from '../../errors.js';
import { fenceRemainingUs, fenceState } from '../../generations/fence.js';
import { GenerationPage } from '../../generations/page.js';
import { ensureDirectories } from '../../service/deployment.js';
import { readShadow } from '../../shadow/file.js';
import type { Cli, CliContext } from '../context.js';

interface InitOptions {
  endpoints: string;
  name: string;
  host?: string;
  lease: string;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
  join?: boolean;
}

async function init(ctx: CliContext, options: InitOptions): Promise<void> {
  const file = clusterFilePath(ctx.settings.configDir);
  if (existsSync(file)) {
    throw new ClusterError('conflict', `${file} exists: this host is in multi-host mode already`);
  }
  if (
    (options.cert === undefined) !== (options.key === undefined) ||
    (options.cert && !options.ca)
  ) {
    throw new ClusterError('not-configured', '--cert and --key go together, and with --ca');
  }
  if ((options.user === undefined) !== (options.passwordFile === undefined)) {
    throw new ClusterError(
      'not-configured',
      '--user and --password-file go together (the password only ever in a file)',
    );
  }
  // Paths made absolute: the manager reads cluster.json from another working directory.
  const input: ClusterSettingsInput = {
    endpoints: options.endpoints.split(',').map((e) => e.trim()),
    cluster: options.name,
    ...(options.host ? { host: options.host } : {}),
    leaseSeconds: Number(options.lease),
    ...(options.ca
      ? {
          tls: {
            ca: path.resolve(options.ca),
            ...(options.cert ? { cert: path.resolve(options.cert) } : {}),
            ...(options.key ? { key: path.resolve(options.key) } : {}),
          },
        }
      : {}),
    ...(options.user && options.passwordFile
      ? { auth: { username: options.user, passwordFile: path.resolve(options.passwordFile) } }
      : {}),
  };
  const settings = resolveClusterSettings(input);
  const keys = new ClusterKeys(settings.cluster);
  await assertTlsWorks(settings, settings.callTimeoutMs * 3);
  const client = createEtcdClient(settings);
  try {
    let summary: { entries: number; secrets: number; revision: number } | null = null;
    if (!options.join) {
      // With a token database, its rows are the tokens (streamed: there may be a million).
      const tokens = ctx.reader().tokenStore;
      const config = await ctx.config();
      const secrets =
        tokens === null ? (await readShadow(ctx.settings.shadowPath)).entries : new Map();
      summary = await moveIntoEtcd(client, keys, config, secrets, 10_000, tokens?.rows());
    } else {
      await readClusterState(client, keys, settings.cluster, 10_000);
    }
    await ensureDirectories(ctx.settings);
    writeFileSync(file, `${JSON.stringify(input, null, 2)}\n`, { mode: 0o600 });
    const next = 'restart the manager to serve from the cluster';
    ctx.printRecord({ cluster: settings.cluster, host: settings.host, file, moved: summary }, [
      ['cluster', settings.cluster],
      ['host', settings.host],
      ['settings', file],
      ...(summary
        ? ([
            ['moved', `${summary.entries} user.cfg entries, ${summary.secrets} token hashes`],
            ['revision', String(summary.revision)],
          ] as const)
        : ([['moved', 'nothing (joined)']] as const)),
      ['next', next],
    ]);
  } finally {
    client.close();
  }
}

async function status(ctx: CliContext): Promise<void> {
  const settings = loadClusterSettings(ctx.settings.configDir);
  if (settings === null) {
    throw new ClusterError(
      'not-configured',
      'single-host mode: no cluster.json (see cluster init)',
    );
  }
  await assertTlsWorks(settings, settings.callTimeoutMs * 3);
  const client = createEtcdClient(settings);
  let local: { host: string; fence: string; fenceRemainingMs: number | null };
  try {
    const page = GenerationPage.open(ctx.settings.pagePath, { create: false, readOnly: true });
    try {
      const us = fenceRemainingUs(page);
      local = {
        host: settings.host,
        fence: fenceState(page),
        fenceRemainingMs: us === null ? null : Math.round(us / 1000),
      };
    } finally {
      page.close();
    }
  } catch {
    local = { host: settings.host, fence: 'unknown (no page)', fenceRemainingMs: null };
  }
  try {
    const state = await readClusterState(
      client,
      new ClusterKeys(settings.cluster),
      settings.cluster,
      settings.leaseSeconds * 2000,
    );
    if (ctx.format !== 'text') {
      ctx.printRecord({ ...state, local }, []);
      return;
    }
    ctx.cli.io.stdout(`cluster ${state.cluster}, data revision ${state.dataRevision}\n`);
    ctx.printList(state.hosts, [
      { header: 'HOST', cell: (h) => h.host },
      { header: 'LIVE', cell: (h) => (h.live ? 'yes' : 'no') },
      { header: 'ACKED', cell: (h) => String(h.ackedRevision ?? '-') },
      { header: 'BEHIND', cell: (h) => String(h.behind ?? '-') },
      { header: 'LEASE LEFT', cell: (h) => `${(h.leaseRemainingMs / 1000).toFixed(0)} s` },
      {
        header: 'FENCED',
        cell: (h) =>
          h.host === local.host ? (local.fence === 'fenced' ? 'yes' : 'no') : h.live ? 'no' : 'yes',
      },
    ]);
  } finally {
    client.close();
  }
}

export function registerClusterCommands(program: Command, cli: Cli): void {
  const cluster = program.command('cluster').description('multi-host mode on etcd');
  cluster
    .command('init')
    .description(
      "move this host's users, tokens and hashes into etcd and switch to multi-host mode",
    )
    .requiredOption('--endpoints <urls>', 'etcd client URLs, comma-separated (every member)')
    .option('--name <cluster>', 'cluster name (keys under /token-shadow/<name>/)', 'default')
    .option('--host <name>', "this host's name in the cluster (default: the hostname)")
    .option('--lease <seconds>', 'sync agent lease: a cut-off host fences within it', '2')
    .option('--ca <file>', 'CA certificate for https endpoints')
    .option('--cert <file>', 'client certificate')
    .option('--key <file>', 'client key')
    .option('--user <name>', 'etcd user')
    .option('--password-file <file>', "file holding the etcd user's password")
    .option('--join', 'the cluster has the data already: only point this host at it')
    .action(cli.action(async (ctx, options: InitOptions) => init(ctx, options)));
  cluster
    .command('status')
    .description('every host of the cluster: acked revision, lease left, fenced or not')
    .action(cli.action(async (ctx) => status(ctx)));
}
