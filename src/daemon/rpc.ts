/**
 * The manager's unix-socket protocol: one JSON object per line each way.
 * A request carries the caller's credential (the Authorization header the API
 * worker was given), never an identity: the manager verifies the credential
 * through its own TokenShadow and derives who asks from it, so a peer of the
 * socket (a compromised worker) can do no more than the credentials it holds.
 *
 * Both sides read lines off the byte stream with a limit (a line longer than
 * it ends the connection before it is buffered; the client never sends one,
 * it answers 413 instead), and every call has a deadline: a manager that does
 * not answer is a 503, not a hung request. The manager reads from a peer only
 * while that peer reads its answers and has few calls waiting, so a peer that
 * writes without reading fills its own socket, not the manager's memory.
 */
import { once } from 'node:events';
import net from 'node:net';
import { ApiError } from '../errors.js';

export interface RpcRequest {
  id: number;
  op: string;
  /** The caller's Authorization header value: `PVEAPIToken=ID=SECRET` or another scheme. */
  credential: string;
  params: Record<string, unknown>;
  /** The API client's address, for the audit trail (what a worker saw, no more). */
  source?: string;
}

export type RpcResponse =
  | { id: number; ok: true; data: unknown }
  | {
      id: number;
      ok: false;
      status: number;
      message: string;
      errors?: Record<string, string>;
      /** The stable code of the error the manager raised (ERR_PERMISSION, ...), for the worker's log. */
      code?: string;
    };

/** Longest request line accepted, so a confused client cannot make the manager buffer without end. */
export const MAX_LINE = 64 * 1024;
/** Longest reply line a client accepts (replies are small: ids, a secret, token info). */
export const MAX_REPLY_LINE = 1024 * 1024;
/** How long a client waits for the manager's answer by default. */
export const DEFAULT_DEADLINE_MS = 15_000;
/**
 * Calls of one connection read but not yet answered before the manager stops
 * reading from it (a worker's calls beyond it wait in its socket, in order).
 */
export const MAX_QUEUED_CALLS = 64;

export type RpcHandler = (request: RpcRequest) => Promise<RpcResponse>;

/**
 * Calls `onLine` for each '\n'-terminated line of `socket`, holding at most
 * `limit` bytes of an unfinished line: beyond that nothing more is read from
 * the socket and `onOverflow` decides what becomes of it.
 */
export function readLines(
  socket: net.Socket,
  limit: number,
  onLine: (line: string) => void,
  onOverflow: () => void,
): void {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  socket.on('data', function onData(chunk: Buffer) {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      if (pendingBytes + piece.length > limit) break;
      pending.push(piece);
      const line = Buffer.concat(pending).toString('utf8');
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
      if (socket.destroyed) return;
      onLine(line);
    }
    const rest = chunk.subarray(start);
    if (chunk.indexOf(10, start) !== -1 || pendingBytes + rest.length > limit) {
      socket.off('data', onData);
      socket.pause();
      pending = [];
      onOverflow();
      return;
    }
    if (rest.length > 0) {
      // A copy: a subarray would keep the whole chunk alive.
      pending.push(Buffer.from(rest));
      pendingBytes += rest.length;
    }
  });
}

export interface ServeOptions {
  /** Told once per connection whose peer stopped reading its answers (reading from it paused). */
  onStalledPeer?: () => void;
}

/**
 * Serves `handler` on every connection; answers in request order per
 * connection. Reading from a connection pauses while MAX_QUEUED_CALLS of its
 * calls wait for their answers, or while its answers wait for the peer to
 * read them (the socket's write buffer is full), and resumes when both have
 * cleared: what a peer can make the manager hold is bounded by those calls,
 * one read's worth of lines and one buffer of answers, whatever it sends.
 */
export function serveRpc(
  server: net.Server,
  handler: RpcHandler,
  options: ServeOptions = {},
): void {
  server.on('connection', (socket) => {
    let chain = Promise.resolve();
    let queued = 0;
    let overflowed = false;
    let stalled = false;
    const resume = () => {
      if (!overflowed && queued < MAX_QUEUED_CALLS && !socket.writableNeedDrain) socket.resume();
    };
    socket.on('drain', resume);
    const answer = async (line: string): Promise<RpcResponse> => {
      let request: RpcRequest;
      try {
        request = JSON.parse(line) as RpcRequest;
        if (typeof request !== 'object' || request === null) throw new Error('not an object');
      } catch {
        return { id: -1, ok: false, status: 400, message: 'bad request line' };
      }
      return handler(request);
    };
    readLines(
      socket,
      MAX_LINE,
      (line) => {
        if (++queued >= MAX_QUEUED_CALLS) socket.pause();
        chain = chain.then(async () => {
          const response = await answer(line);
          queued--;
          if (socket.destroyed) return;
          if (!socket.write(`${JSON.stringify(response)}\n`)) {
            socket.pause();
            if (!stalled) options.onStalledPeer?.();
            stalled = true;
          }
          resume();
        });
      },
      () => {
        // A line too long: nothing more is read, but the calls read before it
        // (perhaps applied already) are answered before the hang-up.
        overflowed = true;
        chain = chain.then(() => {
          // Closed once the answers are flushed (the unread rest is the peer's loss).
          socket.end(() => socket.destroy());
        });
      },
    );
    socket.on('error', () => socket.destroy());
  });
}

/** A refusal from the manager. */
export type RpcRefusal = Extract<RpcResponse, { ok: false }>;

/**
 * The manager's refusal as a worker relays it: status, message, parameter
 * errors and the code of the error the manager raised, all unchanged.
 */
export function relayedError(response: RpcRefusal): ApiError {
  return new ApiError(response.status, response.message, response.errors, response.code);
}

function failure(id: number, status: number, message: string): RpcResponse {
  return { id, ok: false, status, message };
}

/** Whether a parsed reply line has the shape of an RpcResponse. */
function isResponse(value: unknown): value is RpcResponse {
  if (typeof value !== 'object' || value === null) return false;
  const reply = value as Record<string, unknown>;
  if (typeof reply.id !== 'number') return false;
  if (reply.ok === true) return true;
  return (
    reply.ok === false &&
    typeof reply.status === 'number' &&
    typeof reply.message === 'string' &&
    (reply.code === undefined || typeof reply.code === 'string')
  );
}

export interface RpcClientOptions {
  /** How long one call may wait for its answer before it ends in 503 (default 15 s). */
  deadlineMs?: number;
}

/** A client connection to the manager, reconnecting after it drops. */
export class RpcClient {
  readonly socketPath: string;
  readonly deadlineMs: number;
  #socket: net.Socket | null = null;
  #connecting: Promise<net.Socket> | null = null;
  #next = 1;
  #pending = new Map<number, (response: RpcResponse) => void>();

  constructor(socketPath: string, options: RpcClientOptions = {}) {
    this.socketPath = socketPath;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  }

  /**
   * Runs `op` on the manager as whoever `credential` proves to be. Never
   * throws: a lost connection, a malformed reply or a missed deadline answer
   * 503.
   */
  async call(
    op: string,
    credential: string,
    params: Record<string, unknown> = {},
    source?: string,
  ): Promise<RpcResponse> {
    const id = this.#next++;
    const request: RpcRequest = { id, op, credential, params, ...(source ? { source } : {}) };
    const line = `${JSON.stringify(request)}\n`;
    // The manager would hang up on a longer line, failing every call of this
    // connection: this one alone is refused, and never sent.
    if (Buffer.byteLength(line) - 1 > MAX_LINE) {
      return failure(id, 413, `request too large for the manager (over ${MAX_LINE >> 10} KiB)`);
    }
    let socket: net.Socket;
    try {
      socket = await this.#connect();
    } catch {
      return failure(id, 503, 'manager unavailable');
    }
    const reply = new Promise<RpcResponse>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        // The manager goes on with the change: the caller must not take this for "not done".
        resolve(
          failure(
            id,
            503,
            'the manager did not answer in time: the change may still take effect (read before retrying)',
          ),
        );
      }, this.deadlineMs);
      this.#pending.set(id, (response) => {
        clearTimeout(timer);
        resolve(response);
      });
    });
    socket.write(line);
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
      const fail = (message: string) => {
        if (this.#socket === socket) this.#socket = null;
        for (const [id, resolve] of this.#pending) resolve(failure(id, 503, message));
        this.#pending.clear();
      };
      // Before 'connect', so that an error while connecting is handled, not thrown.
      socket.on('close', () => fail('manager connection lost'));
      socket.on('error', () => fail('manager connection lost'));
      await once(socket, 'connect');
      readLines(
        socket,
        MAX_REPLY_LINE,
        (line) => {
          let response: unknown;
          try {
            response = JSON.parse(line);
          } catch {
            response = undefined;
          }
          if (!isResponse(response)) {
            // Nothing on this connection can be matched to its call any more.
            socket.destroy();
            fail('malformed reply from the manager');
            return;
          }
          this.#pending.get(response.id)?.(response);
          this.#pending.delete(response.id);
        },
        () => {
          socket.destroy();
          fail('reply from the manager too long');
        },
      );
      this.#socket = socket;
      return socket;
    })().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }
}
