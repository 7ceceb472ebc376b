/**
 * The etcd client (npm `etcd3`, the maintained gRPC client) as multi-host mode
 * needs it: connections to every member; its circuit breaker off, because it
 * kept a healed member closed for 5 s and blocked resyncs; no hidden global
 * retry; a deadline on every call. retrying() is the one backoff: short
 * jittered pauses, each attempt on another member, bounded by a deadline.
 */
import { readFileSync } from 'node:fs';
import { ExponentialBackoff, type IBackoff, noop } from 'cockatiel';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  type IOptions,
  isRecoverableError,
} from 'etcd3';
import { ClusterError } from '../errors.js';
import type { ClusterSettings } from './settings.js';

/**
 * The largest answer taken from etcd. grpc-js refuses anything over 4 MiB by
 * default, and one range read of `usage/` carries up to 1.5 MB per host
 * (src/cluster/usage-sink.ts): three full records would not pass.
 */
export const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

/** A file the settings name, read now; a typed error naming it (never its content) if it cannot be. */
function readSettingsFile(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ClusterError('not-configured', `cluster ${what} ${file}: cannot read (${code})`);
  }
}

/**
 * The password in `passwordFile`: its content less a final line break (as an
 * editor or `echo` leaves it); spaces are kept, they may be part of it.
 */
export function readPasswordFile(file: string): string {
  const password = readSettingsFile('password file', file)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (password.length === 0) {
    throw new ClusterError('not-configured', `cluster password file ${file} is empty`);
  }
  return password;
}

export function createEtcdClient(settings: ClusterSettings): Etcd3 {
  const options: IOptions = {
    hosts: settings.endpoints,
    grpcOptions: { 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES },
    dialTimeout: settings.callTimeoutMs,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + settings.callTimeoutMs },
    faultHandling: {
      host: () => noop,
      global: noop,
      // A watch stream that broke reconnects (to another member) within half a second.
      // (etcd3 calls .next() on it, a backoff factory; its typings say IBackoff.)
      watchBackoff: new ExponentialBackoff({
        initialDelay: 20,
        maxDelay: 500,
      }) as unknown as IBackoff<unknown>,
    },
  };
  if (settings.tls) {
    options.credentials = {
      rootCertificate: readSettingsFile('CA certificate', settings.tls.ca),
      ...(settings.tls.key ? { privateKey: readSettingsFile('client key', settings.tls.key) } : {}),
      ...(settings.tls.cert
        ? { certChain: readSettingsFile('client certificate', settings.tls.cert) }
        : {}),
    };
  }
  if (settings.auth) {
    options.auth = {
      username: settings.auth.username,
      password: readPasswordFile(settings.auth.passwordFile),
    };
  }
  return new Etcd3(options);
}

/** gRPC failures worth another attempt on another member (unavailable, deadline, leader change). */
export function isTransient(error: unknown): boolean {
  if (isRecoverableError(error as Error)) return true;
  const message = String((error as Error)?.message ?? '');
  return /deadline|unavailable|leader|timed out|no connection|ECONNREFUSED|EHOSTUNREACH|Stream removed|too many requests/i.test(
    message,
  );
}

/**
 * etcd's refusals of this host's credentials as typed errors that say what to
 * fix (they are final: retrying cannot help); anything else as it is. The
 * client's own messages name neither the user nor the password.
 */
export function refusal(what: string, error: unknown): unknown {
  if (error instanceof EtcdAuthenticationFailedError) {
    return new ClusterError(
      'refused',
      `${what}: etcd refused the user name and password (authentication failed: check auth.username and the password file)`,
      { cause: error },
    );
  }
  if (error instanceof EtcdPermissionDeniedError) {
    return new ClusterError(
      'refused',
      `${what}: etcd denied permission: the user (auth.username, or without one the client certificate's common name) needs a role with readwrite on /token-shadow/`,
      { cause: error },
    );
  }
  return error;
}

export interface RetryOptions {
  /** Give up after this long (ms). */
  deadlineMs: number;
  /** Stop early, e.g. the agent is stopping. */
  signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the
 * deadline passes (then ClusterError 'unavailable'). Pauses grow from 10 ms
 * to 200 ms with jitter: a few retries fit in one lease.
 */
export async function retrying<T>(
  what: string,
  options: RetryOptions,
  attempt: () => Promise<T>,
): Promise<T> {
  const end = Date.now() + options.deadlineMs;
  let pause = 10;
  let last: unknown;
  for (;;) {
    if (options.signal?.aborted) throw new ClusterError('unavailable', `${what}: stopped`);
    try {
      return await attempt();
    } catch (error) {
      if (!isTransient(error)) throw refusal(what, error);
      last = error;
    }
    const left = end - Date.now();
    if (left <= 0) break;
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(left, pause * (0.5 + Math.random()))),
    );
    pause = Math.min(200, pause * 2);
  }
  throw new ClusterError(
    'unavailable',
    `${what}: etcd unavailable (${String((last as Error)?.message ?? last).slice(0, 200)})`,
    { cause: last },
  );
}
