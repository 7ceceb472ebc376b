/**
 * What a daemon tells systemd, and what it learns from it: readiness through
 * NOTIFY_SOCKET (Type=notify) and whether its output goes to the journal.
 *
 * Node cannot send on an AF_UNIX datagram socket without a native module
 * (the npm packages sd-notify and unix-dgram both compile one). systemd's own
 * `systemd-notify` is on every systemd host and does it properly: it waits
 * until the manager has processed the message (a barrier), so the message is
 * never lost to the sender exiting early. The messages come from that child,
 * not from the main PID, which is why the units say NotifyAccess=all.
 */
import { execFile } from 'node:child_process';
import { fstatSync } from 'node:fs';

/** Something a notification can say; each becomes one VARIABLE=VALUE argument. */
export interface Notification {
  ready?: boolean;
  reloading?: boolean;
  stopping?: boolean;
  status?: string;
}

export type NotifyOutcome = 'sent' | 'not-under-systemd' | 'failed';

function assignments(n: Notification): string[] {
  const out: string[] = [];
  if (n.reloading) {
    out.push('RELOADING=1');
    // systemd >= 253 wants the time with RELOADING=1 (Type=notify-reload); older ones ignore it.
    out.push(`MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`);
  }
  if (n.ready) out.push('READY=1');
  if (n.stopping) out.push('STOPPING=1');
  if (n.status !== undefined) out.push(`STATUS=${n.status.replace(/\n/g, ' ')}`);
  return out;
}

/**
 * Sends `n` to the service manager when NOTIFY_SOCKET is set; otherwise does
 * nothing. Never throws: a daemon must not die because systemd-notify is
 * missing, and `onFailure` says why once per failed call.
 */
export function notifySystemd(
  n: Notification,
  onFailure: (message: string) => void = () => undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<NotifyOutcome> {
  if (!env.NOTIFY_SOCKET) return Promise.resolve('not-under-systemd');
  // --pid names this process as the sender; an unprivileged one falls back to its own credentials.
  const args = [`--pid=${process.pid}`, ...assignments(n)];
  return new Promise((resolve) => {
    execFile('systemd-notify', args, { env, timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) {
        onFailure(`systemd-notify ${args.join(' ')} failed: ${stderr.trim() || error.message}`);
        resolve('failed');
      } else {
        resolve('sent');
      }
    });
  });
}

/**
 * True when stdout is the journal stream systemd connected (JOURNAL_STREAM
 * names its device and inode), so lines may start with a `<N>` priority. A
 * redirected stdout (`| tee`, a file) keeps its plain lines.
 */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const stream = env.JOURNAL_STREAM;
  if (!stream) return false;
  const [dev, ino] = stream.split(':');
  try {
    const st = fstatSync(fd, { bigint: true });
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}
