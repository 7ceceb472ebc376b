/**
 * One autocannon load generator in its own process, so that it does not share
 * an event loop with the benchmark (it still shares the machine's cores with
 * the daemons: the benchmarks say so). Takes a LoadSpec as JSON in argv[2],
 * prints "ready", waits for "go" on stdin, runs, prints one LoadResult line.
 *
 * Latencies are recorded per response from autocannon's 'response' event (ms
 * as a float), per status code, so that e.g. an attacker's 401s and 503s get
 * their own percentiles; autocannon's own histogram rounds to whole ms.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import autocannon from 'autocannon';
import { say, stdinLines } from './children.js';
import type { LoadResult, LoadSpec } from './load.js';
import { summarize } from './stats.js';

function headerSource(spec: LoadSpec): (() => string | undefined) | null {
  switch (spec.mode) {
    case 'fixed':
      return null;
    case 'wrong-secret':
      return () => `PVEAPIToken=${spec.tokenid}=${randomUUID()}`;
    case 'unknown-id':
      return () =>
        `PVEAPIToken=flood${randomBytes(6).toString('hex')}@pve!t${randomBytes(4).toString('hex')}=${randomUUID()}`;
    case 'tokens': {
      const tokens = JSON.parse(readFileSync(spec.tokensFile as string, 'utf8')) as Array<
        [string, string]
      >;
      const headers = tokens.map(([id, secret]) => `PVEAPIToken=${id}=${secret}`);
      let next = Math.floor(Math.random() * headers.length);
      return () => headers[next++ % headers.length];
    }
  }
}

/**
 * autocannon has no option for the source address: it calls net.connect(port, host). Wrapping
 * that one function (the same object autocannon's require('net') sees) binds every new
 * connection to the next of `addresses`, so one process can be several sources.
 */
function bindSources(addresses: string[]): void {
  const connect = net.connect;
  let next = 0;
  const bound = (...args: unknown[]) => {
    const [port, host] = args;
    if (typeof port !== 'number' || typeof host !== 'string') {
      return (connect as (...a: unknown[]) => net.Socket)(...args);
    }
    const localAddress = addresses[next++ % addresses.length] as string;
    return connect({ port, host, localAddress });
  };
  net.connect = bound as typeof net.connect;
  net.createConnection = bound as typeof net.createConnection;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  if (spec.sourceAddresses && spec.sourceAddresses.length > 0) bindSources(spec.sourceAddresses);
  const source = headerSource(spec);
  const fixed = spec.authorization ? { authorization: spec.authorization } : {};
  const next = stdinLines();
  say('ready');
  if ((await next()) !== 'go') process.exit(1);

  const latencies = new Map<number, number[]>();
  let responses = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const instance = autocannon(
    {
      url: spec.url,
      connections: spec.connections,
      duration: spec.duration,
      pipelining: spec.pipelining ?? 1,
      ...(spec.overallRate ? { overallRate: spec.overallRate } : {}),
      timeout: 10,
      requests: [
        source
          ? {
              method: 'GET',
              setupRequest: (request) => ({
                ...request,
                headers: { ...request.headers, authorization: source() },
              }),
            }
          : { method: 'GET', headers: fixed },
      ],
    },
    () => undefined,
  );
  instance.on('response', (_client, statusCode, _bytes, ms) => {
    responses++;
    let list = latencies.get(statusCode);
    if (list === undefined) {
      list = [];
      latencies.set(statusCode, list);
    }
    list.push(ms);
  });
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    instance.on('done', resolve);
    instance.on('error', reject);
  });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const all: number[] = [];
  const byStatus: LoadResult['byStatus'] = {};
  for (const [status, list] of latencies) {
    for (const v of list) all.push(v);
    byStatus[String(status)] = summarize(list);
  }
  const ok = latencies.get(200)?.length ?? 0;
  const out: LoadResult = {
    connections: spec.connections,
    seconds: result.duration,
    responses,
    rps: responses / result.duration,
    okRps: ok / result.duration,
    errors: result.errors,
    timeouts: result.timeouts,
    latency: summarize(all),
    byStatus,
    cpuPercent: ((used.user + used.system) / 1e6 / seconds) * 100,
  };
  say(out);
  process.exit(0);
}

await main();
