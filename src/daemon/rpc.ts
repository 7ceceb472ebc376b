/**
 * The manager's unix-socket protocol: one JSON object per line each way.
 * A request carries the identity the API worker authenticated; the manager
 * checks that identity's privileges again before changing anything.
 */
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';

export interface RpcRequest {
  id: number;
  op: string;
  /** The authenticated user or token id on whose behalf the change is made. */
  identity: string;
  params: Record<string, unknown>;
}

export type RpcResponse =
  | { id: number; ok: true; data: unknown }
  | { id: number; ok: false; status: number; message: string; errors?: Record<string, string> };

/** Longest request line accepted, so a confused client cannot make the manager buffer without end. */
export const MAX_LINE = 64 * 1024;

export type RpcHandler = (request: RpcRequest) => Promise<RpcResponse>;

/** Serves `handler` on every connection; answers in request order per connection. */
export function serveRpc(server: net.Server, handler: RpcHandler): void {
  server.on('connection', (socket) => {
    const lines = createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY });
    let chain = Promise.resolve();
    lines.on('line', (line) => {
      if (line.length > MAX_LINE) {
        socket.destroy();
        return;
      }
      chain = chain.then(async () => {
        let request: RpcRequest;
        try {
          request = JSON.parse(line) as RpcRequest;
        } catch {
          socket.write(
            `${JSON.stringify({ id: -1, ok: false, status: 400, message: 'bad request line' })}\n`,
          );
          return;
        }
        const response = await handler(request);
        if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
      });
    });
    socket.on('error', () => socket.destroy());
  });
}

/** A client connection to the manager, reconnecting after it drops. */
export class RpcClient {
  readonly socketPath: string;
  #socket: net.Socket | null = null;
  #connecting: Promise<net.Socket> | null = null;
  #next = 1;
  #pending = new Map<number, (response: RpcResponse) => void>();

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  async call(
    op: string,
    identity: string,
    params: Record<string, unknown> = {},
  ): Promise<RpcResponse> {
    const socket = await this.#connect();
    const id = this.#next++;
    const request: RpcRequest = { id, op, identity, params };
    const reply = new Promise<RpcResponse>((resolve) => this.#pending.set(id, resolve));
    socket.write(`${JSON.stringify(request)}\n`);
    return reply;
  }

  close(): void {
    this.#socket?.end();
    this.#socket = null;
  }

  async #connect(): Promise<net.Socket> {
    if (this.#socket !== null && !this.#socket.destroyed) return this.#socket;
    if (this.#connecting !== null) return this.#connecting;
    this.#connecting = (async () => {
      const socket = net.createConnection(this.socketPath);
      await once(socket, 'connect');
      const lines = createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY });
      lines.on('line', (line) => {
        const response = JSON.parse(line) as RpcResponse;
        this.#pending.get(response.id)?.(response);
        this.#pending.delete(response.id);
      });
      const fail = () => {
        if (this.#socket === socket) this.#socket = null;
        for (const [id, resolve] of this.#pending) {
          resolve({ id, ok: false, status: 503, message: 'manager connection lost' });
        }
        this.#pending.clear();
      };
      socket.on('close', fail);
      socket.on('error', fail);
      this.#socket = socket;
      return socket;
    })().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }
}
