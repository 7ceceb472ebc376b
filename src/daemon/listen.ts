/**
 * Which address the API listens on when `--host` is not given: `::`, which
 * libuv opens dual-stack (IPV6_V6ONLY off, whatever the sysctl says), so IPv4
 * clients arrive as ::ffff:a.b.c.d. A kernel without IPv6 (ipv6.disable=1)
 * refuses AF_INET6 sockets altogether; then 0.0.0.0.
 */
import net from 'node:net';

export const DUAL_STACK_HOST = '::';
export const IPV4_ANY_HOST = '0.0.0.0';

/** The errors that mean "no IPv6 here", as opposed to a port in use or a permission. */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT']);

/** Binds `::` on a free port once to find out; resolves with the host to use and why. */
export function defaultListenHost(): Promise<{ host: string; reason?: string }> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code && NO_IPV6.has(error.code)) {
        resolve({ host: IPV4_ANY_HOST, reason: `IPv6 unavailable (${error.code})` });
      } else {
        reject(error);
      }
    });
    probe.listen({ host: DUAL_STACK_HOST, port: 0, ipv6Only: false }, () => {
      probe.close(() => resolve({ host: DUAL_STACK_HOST }));
    });
  });
}

/** host:port as a URL authority: IPv6 literals in brackets. */
export function authority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
