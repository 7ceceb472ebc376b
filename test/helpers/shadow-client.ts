/** Drives a test/fixtures/shadow-child process: request/response plus events. */
import type { HashPoolStats, TokenShadowStats } from '../../src/index.js';
import { type Child, fixture, startChild } from './children.js';

export class ShadowClient {
  readonly child: Child;
  #seq = 0;
  #pending = new Map<number, (value: Record<string, unknown>) => void>();
  #events: Array<Record<string, unknown>> = [];
  #eventWaiters: Array<(value: Record<string, unknown>) => void> = [];

  private constructor(child: Child) {
    this.child = child;
    const pump = async () => {
      for (;;) {
        let line: string;
        try {
          line = await child.nextLine();
        } catch {
          return;
        }
        const message = JSON.parse(line) as Record<string, unknown>;
        if (typeof message.seq === 'number') {
          this.#pending.get(message.seq)?.(message);
          this.#pending.delete(message.seq);
        } else {
          const waiter = this.#eventWaiters.shift();
          if (waiter) waiter(message);
          else this.#events.push(message);
        }
      }
    };
    void pump();
  }

  static async start(shadowPath: string, pagePath: string | null, ttlMs = 1000) {
    return ShadowClient.spawn('shadow-child', [shadowPath, pagePath ?? '-', String(ttlMs)]);
  }

  /** Any fixture speaking the same protocol: "ready", then {seq, op} lines. */
  static async spawn(name: string, args: string[]): Promise<ShadowClient> {
    const child = startChild(fixture(name), args);
    const line = await child.nextLine();
    if (line !== 'ready') throw new Error(`child said ${line}: ${child.stderr()}`);
    return new ShadowClient(child);
  }

  request(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      this.#pending.set(seq, resolve);
      this.child.process.stdin?.write(`${JSON.stringify({ seq, op, ...args })}\n`);
    });
  }

  async verify(id: string, secret: string): Promise<boolean | string> {
    const reply = await this.request('verify', { id, secret });
    return 'error' in reply ? (reply.error as string) : (reply.ok as boolean);
  }

  nextEvent(): Promise<Record<string, unknown>> {
    const event = this.#events.shift();
    if (event) return Promise.resolve(event);
    return new Promise((resolve) => this.#eventWaiters.push(resolve));
  }

  async stats(): Promise<{ shadow: TokenShadowStats; pool: HashPoolStats }> {
    return (await this.request('stats')) as never;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.process.once('exit', resolve));
    this.child.process.stdin?.end();
    await exited;
  }
}
