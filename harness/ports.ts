/** Free TCP ports for the tests' servers. */
import { once } from 'node:events';
import net from 'node:net';

/**
 * `count` distinct free ports on `host`: all bound at once before any is
 * closed (two ports found one after the other can be the same one, which
 * once gave an etcd member its client and peer listener on one port).
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = Array.from({ length: count }, () => net.createServer());
  try {
    for (const server of servers) server.listen(0, host);
    await Promise.all(servers.map((server) => once(server, 'listening')));
    return servers.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(
      servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}
