/**
 * Why TLS to an etcd member fails, in words an operator can act on. gRPC
 * reports every failed handshake as "No connection established. Last error:
 * null", whatever the cause; this probe makes the same handshake with
 * node:tls (the settings' CA, certificate and key, ALPN h2) and waits for the
 * member's first HTTP/2 frame, because under TLS 1.3 a member that rejects
 * the client's certificate says so only after the handshake completed.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { ClusterError } from '../errors.js';
import type { ClusterSettings } from './settings.js';

/** Client-side verification failures: the member's certificate is not one tls.ca vouches for. */
const UNTRUSTED =
  /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED)$/;

function describe(
  endpoint: string,
  error: NodeJS.ErrnoException,
  withCert: boolean,
): string | null {
  const code = error.code ?? '';
  if (UNTRUSTED.test(code)) {
    return `${endpoint}: the member's certificate is not signed by the CA in tls.ca (${code})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `${endpoint}: the member's certificate does not name this address (${code})`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return `${endpoint}: the member's certificate is outside its validity (${code})`;
  }
  const rejected = /ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE|CERTIFICATE_UNKNOWN)/;
  if (/CERTIFICATE_REQUIRED/.test(code) || (!withCert && rejected.test(code))) {
    return `${endpoint}: the member requires a client certificate (set tls.cert and tls.key) (${code})`;
  }
  if (rejected.test(code)) {
    return `${endpoint}: the member rejected the client certificate in tls.cert (${code})`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ECONNRESET') {
    return `${endpoint}: the member does not speak TLS on this port (${code || 'reset'})`;
  }
  // Refused, unreachable, timed out: not a TLS problem.
  return null;
}

/** The least time a handshake is given before it counts as no TLS problem (only slow). */
const MIN_PROBE_MS = 3000;

/** The TLS problem with `endpoint` (an https:// URL), or null when the handshake and first frame pass. */
export function tlsProblem(
  endpoint: string,
  settings: NonNullable<ClusterSettings['tls']>,
  timeoutMs: number,
): Promise<string | null> {
  const url = new URL(endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let options: tls.ConnectionOptions;
  try {
    options = {
      host,
      port: Number(url.port || 2379),
      ca: readFileSync(settings.ca),
      ...(settings.cert ? { cert: readFileSync(settings.cert) } : {}),
      ...(settings.key ? { key: readFileSync(settings.key) } : {}),
      ALPNProtocols: ['h2'],
      // SNI takes names only; an address is checked against the certificate's IP SANs.
      ...(net.isIP(host) ? {} : { servername: host }),
    };
  } catch (error) {
    return Promise.resolve(
      `cannot read the TLS files: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  return new Promise((resolve) => {
    const socket = tls.connect(options);
    const done = (problem: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    // An HTTP/2 server's first frame (its SETTINGS) arrives once it accepted us.
    socket.once('data', () => done(null));
    socket.once('error', (error) => done(describe(endpoint, error, settings.cert !== undefined)));
    socket.once('close', () => done(null));
  });
}

/**
 * The TLS problem every https endpoint has, or null if any of them
 * handshakes (a member down is not a settings problem).
 */
export async function tlsProblemOfAll(
  settings: ClusterSettings,
  timeoutMs: number,
): Promise<string | null> {
  const secure = settings.endpoints.filter((e) => e.startsWith('https://'));
  if (settings.tls === undefined || secure.length === 0) return null;
  const tlsSettings = settings.tls;
  // A diagnosis, run once on a failure: a busy member may need longer than a call deadline
  // (500 ms by default) to finish a handshake, and then a timeout would hide the problem.
  const waitMs = Math.max(timeoutMs, MIN_PROBE_MS);
  const problems = await Promise.all(secure.map((e) => tlsProblem(e, tlsSettings, waitMs)));
  if (problems.some((p) => p === null)) return null;
  return problems[0] ?? null;
}

/** Throws ClusterError('refused') naming the TLS problem every endpoint has, before any gRPC call waits out its deadline on it. */
export async function assertTlsWorks(settings: ClusterSettings, timeoutMs: number): Promise<void> {
  const problem = await tlsProblemOfAll(settings, timeoutMs);
  if (problem !== null) throw new ClusterError('refused', `TLS to etcd failed: ${problem}`);
}
