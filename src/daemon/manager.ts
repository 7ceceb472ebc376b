#!/usr/bin/env node
/**
 * The privileged manager: the daemons' only writer of user.cfg and token.shadow
 * (tokenctl, run by root on the host, writes them too: see src/service). It
 * listens only on a unix socket (0600, or 0660 for the configured group),
 * authenticates every request itself from the credential it carries (through
 * its own TokenShadow: a cached verify), checks that caller's privileges,
 * bumps the generations through the stores, and logs every mutation without
 * secrets. A peer of the socket cannot name an identity: whoever it claims to
 * act for, it gets 401 without that caller's secret.
 */
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AuditTrail } from '../audit/trail.js';
import { type ClusterView, readClusterView } from '../cluster/admin.js';
import { EtcdStorage } from '../cluster/storage.js';
import { effectiveExpiry } from '../config/expiring.js';
import { ParameterError, TokenShadowError } from '../errors.js';
import { readWebhookSettings, type WebhookSettings } from '../events/settings.js';
import { Webhooks } from '../events/webhooks.js';
import { Authenticator, type Identity, type PolicyEvent } from '../http/authenticate.js';
import { errorCode, httpFailureOf } from '../http/status.js';
import { joinTokenid } from '../ids.js';
import { type AuditContext, recordingStorage, recordOutcome } from '../service/audited.js';
import { type Deployment, ensureDirectories, openDeployment } from '../service/deployment.js';
import { OPERATIONS, runWrite, type Stores, type WriteContext } from '../service/operations.js';
import { requirePrivileges } from '../service/rules.js';
import type { Settings } from '../service/settings.js';
import type { RecordingStorage } from '../service/storage.js';
import { openStorageMode, type StorageMode } from '../service/storage-mode.js';
import { readLastUsed } from '../usage/file.js';
import type { LastUsedLedger } from '../usage/ledger.js';
import { daemonCommand, fileInput, settingsFilePath, settingsFrom } from './cli-options.js';
import { LEAK_REPORT_OP, LeakIntake, reportedSecrets } from './leak-intake.js';
import { createLogger, type Logger } from './logger.js';
import { oncePerMinute, POLICY_EVENT_OP, policyEventOf } from './policy-events.js';
import { CLUSTER_VIEW_OP, CLUSTER_VIEW_PRIVILEGE } from './routes/cluster.js';
import { type RpcRequest, type RpcResponse, serveRpc } from './rpc.js';
import { readSettingsFile } from './settings-file.js';
import { notifySystemd } from './systemd.js';
import { ensureCertificate, expiryWarning, loadCertificate } from './tls.js';
import { openLedger, USAGE_REPORT_OP, watchExpiry } from './usage.js';

/** The operation a socket request names, with its params checked: only writes are served here. */
function operationOf(request: RpcRequest) {
  const operation = OPERATIONS.get(String(request.op));
  if (operation?.access !== 'write') {
    throw new ParameterError(
      `unknown operation ${JSON.stringify(String(request.op)).slice(0, 40)}`,
    );
  }
  return { operation, params: operation.parse(request.params) };
}

/** What the log may say about a request: ids only, never secrets or hashes. */
function describe(request: RpcRequest, caller: Identity | null) {
  const params = request.params;
  return {
    op: request.op,
    identity: caller?.authid ?? null,
    target: params.tokenName
      ? `${params.userid}!${params.tokenName}`
      : (params.userid ?? params.groupid ?? params.path),
  };
}

/**
 * Runs one socket request as the operation it names, for whoever its
 * credential proves to `auth` (the manager's own stores: a cached verify).
 */

/** The client address each forwarded credential came with (what its worker saw). */
const credentialSources = new WeakMap<object, string>();

/**
 * A request's credential as headers the Authenticator takes, with the
 * client address its worker saw: a token's allowed-ips apply here too.
 */
function credentialOf(request: RpcRequest): { authorization?: string } {
  const headers =
    typeof request.credential === 'string' ? { authorization: request.credential } : {};
  if (typeof request.source === 'string') credentialSources.set(headers, request.source);
  return headers;
}

export function handler(
  stores: Stores,
  auth: Authenticator,
  log: Logger,
  ledger?: LastUsedLedger,
  trail?: AuditTrail,
  clusterView?: () => Promise<ClusterView>,
  onPolicyEvent?: (event: PolicyEvent) => void,
  leaks?: LeakIntake,
) {
  /** Where the record of a request goes: the client address the worker saw, or the socket. */
  const auditOf = (request: RpcRequest): AuditContext | null =>
    trail === undefined
      ? null
      : {
          trail,
          source: typeof request.source === 'string' ? request.source.slice(0, 64) : 'socket',
          onAuditFailure: (error) => log.error({ err: String(error) }, 'audit record not written'),
        };
  /** The trail's record of a request's outcome; what the log line adds of it. */
  const audited = async (
    request: RpcRequest,
    caller: Identity | null,
    error?: unknown,
    recording?: RecordingStorage | null,
  ) => {
    const audit = auditOf(request);
    if (audit === null) return {};
    const revision = recording?.recorded.at(-1);
    const op = String(request.op);
    const record = await recordOutcome(audit, op, caller, request.params, error, revision);
    return record === null
      ? {}
      : {
          source: record.source,
          changes: record.changes,
          seq: record.seq,
          ...(recording?.recorded.length ? { revisions: recording.recorded } : {}),
        };
  };
  return async (request: RpcRequest): Promise<RpcResponse> => {
    const id = typeof request.id === 'number' ? request.id : -1;
    // The API's readiness probe: proves the manager answers, changes nothing, logs nothing.
    if (request.op === 'ping') return { id, ok: true, data: 'pong' };
    if (typeof request.params !== 'object' || !request.params) {
      return { id, ok: false, status: 400, message: 'malformed request' };
    }
    // A worker's policy event (source refused, previous secret used): for the webhooks.
    if (request.op === POLICY_EVENT_OP) {
      const event = policyEventOf(request.params);
      if (event === null) return { id, ok: false, status: 400, message: 'malformed policy event' };
      onPolicyEvent?.(event);
      return { id, ok: true, data: null };
    }
    // The cluster view (GET /cluster/token-shadow): a read, so no audit record and no mutation line.
    if (request.op === CLUSTER_VIEW_OP && clusterView) {
      try {
        const viewer = await auth.authenticate(credentialOf(request));
        const { path: on, privs } = CLUSTER_VIEW_PRIVILEGE;
        requirePrivileges(await stores.readConfig(), viewer, on, privs);
        return { id, ok: true, data: await clusterView() };
      } catch (error) {
        const code = error instanceof TokenShadowError ? { code: error.code } : {};
        return { id, ok: false, ...httpFailureOf(error), ...code };
      }
    }
    // A leaked secret reported (POST /access/leaked-secrets): no credential, anyone may. The
    // answer is the same whatever matched; the revocations are audited as they run (leak-intake.ts).
    if (request.op === LEAK_REPORT_OP && leaks) {
      try {
        const reporter = typeof request.source === 'string' ? request.source : 'socket';
        await leaks.report(reportedSecrets(request.params), reporter);
        return { id, ok: true, data: null };
      } catch (error) {
        const code = error instanceof TokenShadowError ? { code: error.code } : {};
        return { id, ok: false, ...httpFailureOf(error), ...code };
      }
    }
    let caller: Identity | null = null;
    let recording: RecordingStorage | null = null;
    // The live ledger: what workers reported, newer than its file.
    const context: WriteContext = ledger
      ? {
          lastUses: {
            intervalMs: ledger.intervalMs,
            lookup: async () => (tokenid) => ledger.lastUse(tokenid)?.seconds,
          },
        }
      : {};
    try {
      // A worker's usage batch: no mutation, no log line (one arrives every interval per worker).
      if (request.op === USAGE_REPORT_OP && ledger) {
        return { id, ok: true, data: { taken: await ledger.report(request.params.uses) } };
      }
      // No credential, or one that does not verify: AuthenticationError, a 401.
      caller = await auth.authenticate(credentialOf(request));
      const { operation, params } = operationOf(request);
      // Multi-host mode: each change's record goes into the cluster's trail with it.
      recording = recordingStorage(
        { source: auditOf(request)?.source ?? 'socket' },
        stores,
        operation.name,
        caller,
        request.params,
      );
      const data = await runWrite(operation, recording ?? stores, caller, params, context);
      const deleted = operation.deletedToken?.(params);
      if (deleted !== undefined) ledger?.forget(deleted);
      for (const tokenid of operation.revokedTokens?.(data) ?? []) ledger?.forget(tokenid);
      const record = await audited(request, caller, undefined, recording);
      log.info({ ...describe(request, caller), outcome: 'ok', ...record }, 'mutation');
      return { id, ok: true, data };
    } catch (error) {
      const failure = httpFailureOf(error);
      // A refusal before the operation ran (no credential, unknown operation) is a record too.
      const record = await audited(request, caller, error, recording);
      log[failure.status >= 500 ? 'error' : 'info'](
        {
          ...describe(request, caller),
          outcome: 'refused',
          status: failure.status,
          code: errorCode(error),
          ...record,
        },
        'mutation',
      );
      // The error's kind travels too: the worker relays status, message and code unchanged.
      const code = error instanceof TokenShadowError ? { code: error.code } : {};
      return { id, ok: false, ...failure, ...code };
    }
  };
}

/** How often the manager looks for tokenctl's records and for notices due. */
const AUDIT_POLL_MS = 2000;
const NOTICE_CHECK_MS = 60 * 60 * 1000;

/**
 * The webhooks (src/events): fed by the audit trail (the manager's own
 * records at once, tokenctl's within AUDIT_POLL_MS) and by an hourly check
 * for tokens expiring within a lead time or unused for too long.
 */
async function startWebhooks(settings: Settings, deployment: Deployment, log: Logger) {
  const trail = new AuditTrail({ dir: settings.auditDir, host: hostname() });
  const webhooks = new Webhooks(await readWebhookSettings(settings.webhooksPath), {
    dir: settings.eventsDir,
    host: hostname(),
    auditAfter: (seq) => trail.recordsAfter(seq),
    auditHead: () => trail.head(),
    async tokens() {
      const config = await deployment.users.get();
      const uses = (await readLastUsed(settings.lastUsedPath)).tokens;
      return [...config.users].flatMap(([userid, user]) =>
        [...user.tokens]
          .filter(([, token]) => user.enable && token.enable)
          .map(([name, token]) => {
            const id = joinTokenid(userid, name);
            return {
              id,
              expire: effectiveExpiry(user.expire, token.expire),
              lastUsed: uses.get(id)?.seconds,
            };
          }),
      );
    },
    log,
  });
  await webhooks.open();
  const poll = setInterval(() => void webhooks.wake(), AUDIT_POLL_MS);
  const notices = setInterval(() => void webhooks.checkNotices(), NOTICE_CHECK_MS);
  poll.unref();
  notices.unref();
  void webhooks.checkNotices();
  return {
    wake: () => webhooks.wake(),
    report: (event: PolicyEvent) => {
      const data = {
        tokenid: event.tokenid,
        source: event.source ?? null,
        ...(event.kind === 'previous-secret-used'
          ? { grace: event.afterGrace === true ? 'ended' : 'open' }
          : {}),
      };
      const type =
        event.kind === 'source-refused' ? 'token.source-refused' : 'token.previous-secret-used';
      void webhooks.report(type, data);
    },
    reconfigure: (next: WebhookSettings) => webhooks.reconfigure(next),
    stop() {
      clearInterval(poll);
      clearInterval(notices);
      webhooks.stop();
    },
  };
}

/** Removes a socket file left by a dead manager; refuses if one is still listening. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another manager is listening on ${socketPath}`);
  await fsp.rm(socketPath, { force: true });
}

/** Logs a warning when the API certificate expires soon (or has expired). */
async function warnAboutCertificate(settings: Settings, log: Logger): Promise<void> {
  const { notAfter } = await loadCertificate(settings.certPath, settings.keyPath);
  const warning = expiryWarning(notAfter);
  if (warning) log[warning.level]({ cert: settings.certPath, notAfter }, warning.message);
  else log.info({ cert: settings.certPath, notAfter }, 'reloaded: certificate valid');
}

export interface RunningManager {
  deployment: Deployment;
  mode: StorageMode;
  server: net.Server;
  /** Applies what a reload may change here: the last-used interval and the expiry window. */
  reconfigure(next: Settings): Promise<void>;
  stop(): Promise<void>;
}

export async function startManager(
  settings: Settings,
  log: Logger = createLogger('manager'),
): Promise<RunningManager> {
  await ensureDirectories(settings);
  const deployment = openDeployment(settings, 'manager', { warn: (m) => log.warn(m) });
  const mode = await openStorageMode(deployment, 'manager', log);
  // First start: user.cfg with root@pam (re-added on every read) and the API
  // certificate. In multi-host mode the sync agent writes user.cfg.
  if (mode.cluster === null) await deployment.users.mutate(() => undefined);
  const tls = await ensureCertificate(settings.certPath, settings.keyPath, settings.gid);
  if (tls.created) log.info({ cert: settings.certPath }, 'created a self-signed certificate');
  await clearStaleSocket(settings.socketPath);
  const ledger = await openLedger(deployment, log, mode);
  let expiryWindowSeconds = settings.expiryWindowSeconds;
  let expiryWatch = watchExpiry(deployment, log, expiryWindowSeconds);
  const server = net.createServer();
  const auth = new Authenticator({
    users: deployment.users,
    shadow: deployment.secrets,
    clientAddress: (request) =>
      typeof request === 'object' ? credentialSources.get(request) : undefined,
  });
  const webhooks = await startWebhooks(settings, deployment, log);
  const trail = new AuditTrail({
    dir: settings.auditDir,
    host: hostname(),
    onRecord: () => void webhooks.wake(),
  });
  const clusterView = async (): Promise<ClusterView> =>
    mode.cluster !== null && mode.storage instanceof EtcdStorage
      ? readClusterView(mode.storage.client, mode.cluster, deployment.page)
      : { mode: 'single-host' };
  // Each worker filters its own; several workers may tell one thing, once more each at most.
  const freshPolicyEvent = oncePerMinute();
  const onPolicyEvent = (event: PolicyEvent) => {
    if (freshPolicyEvent(event)) webhooks.report(event);
  };
  // Leaked-secret reports: their receipts, and the revocations a previous run left undone.
  const leaks = new LeakIntake({
    dir: path.join(settings.configDir, 'leak-reports'),
    stores: mode.storage,
    shadow: deployment.secrets,
    trail,
    penalties: settings.penalties,
    log,
    onRevoked: (tokenid) => ledger.forget(tokenid),
  });
  await leaks.open();
  const serve = handler(mode.storage, auth, log, ledger, trail, clusterView, onPolicyEvent, leaks);
  serveRpc(server, serve, {
    onStalledPeer: () =>
      log.info(
        'a peer of the socket does not read its answers: reading from it paused until it does',
      ),
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(settings.socketPath, resolve);
    });
  } finally {
    process.umask(oldMask);
  }
  if (settings.gid !== undefined) {
    await fsp.chown(settings.socketPath, -1, settings.gid);
    await fsp.chmod(settings.socketPath, 0o660);
  } else {
    await fsp.chmod(settings.socketPath, 0o600);
  }
  log.info(
    {
      socket: settings.socketPath,
      config: settings.configDir,
      page: deployment.page?.path ?? null,
      mode: mode.cluster === null ? 'single-host' : 'multi-host',
      ...(mode.cluster ? { cluster: mode.cluster.cluster, host: mode.cluster.host } : {}),
      lastUsed: settings.lastUsedPath,
      lastUsedIntervalMs: settings.lastUsedIntervalMs,
    },
    'manager ready',
  );
  let stopping: Promise<void> | null = null;
  return {
    deployment,
    mode,
    server,
    async reconfigure(next) {
      // First what may be refused: a bad webhooks.json keeps every old setting.
      const hooks = await readWebhookSettings(next.webhooksPath);
      webhooks.reconfigure(hooks);
      ledger.retime(next.lastUsedIntervalMs);
      if (next.expiryWindowSeconds !== expiryWindowSeconds) {
        expiryWatch.stop();
        expiryWindowSeconds = next.expiryWindowSeconds;
        expiryWatch = watchExpiry(deployment, log, expiryWindowSeconds);
      }
      log.info(
        {
          lastUsedIntervalMs: ledger.intervalMs,
          expiryWindowSeconds,
          webhooks: hooks.endpoints.length,
        },
        'reloaded: last-used interval, expiry window and webhooks',
      );
    },
    stop() {
      stopping ??= (async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        expiryWatch.stop();
        webhooks.stop();
        leaks.stop();
        await ledger.close();
        await mode.close();
        await deployment.close();
        await fsp.rm(settings.socketPath, { force: true });
      })();
      return stopping;
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const command = daemonCommand('token-shadow-manager', 'the privileged token manager').parse(argv);
  const flags = command.opts();
  const file = settingsFilePath(flags, settingsFrom(flags).configDir);
  // The settings file under the command line, read again at each reload.
  const load = async () => settingsFrom(flags, fileInput(await readSettingsFile(file)));
  const settings = await load();
  const log = createLogger('manager');
  const manager = await startManager(settings, log);
  const notifyFailed = (message: string) => log.warn(message);
  // SIGHUP (systemctl reload): the settings file's last-used interval and
  // expiry window apply; nothing else is cached across requests here, so the
  // rest of a reload checks the certificate the API will read and says so.
  process.on('SIGHUP', () => {
    notifySystemd({ reloading: true }, notifyFailed)
      .then(load)
      .then((next) => manager.reconfigure(next))
      .then(() => warnAboutCertificate(settings, log))
      // A refused settings file changes nothing: the previous settings stay in force.
      .catch((error) => log.error({ err: String(error), settings: 'unchanged' }, 'reload failed'))
      .finally(() => notifySystemd({ ready: true, status: 'serving' }, notifyFailed));
  });
  const shutdown = (signal: string) => {
    notifySystemd({ stopping: true }, notifyFailed);
    log.info({ signal }, 'stopping');
    manager.stop().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: String(error) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // Last: systemd may send a reload as soon as it hears READY=1.
  await notifySystemd({ ready: true, status: 'serving' }, notifyFailed);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv).catch((error) => {
    process.stderr.write(
      `token-shadow-manager: ${error instanceof Error ? error.message : error}\n`,
    );
    process.exit(1);
  });
}
