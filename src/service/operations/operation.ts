/**
 * What an operation is, and how one runs: the shape every entry of the
 * operation table has (src/service/operations.ts), the Writer through which a
 * write operation sees the stores, and the helpers the resources share.
 *
 * A privilege rule is a function of the caller, the params and the config it
 * is checked against. A write checks it again inside the file lock, on the
 * fresh config, before every look at the config its run takes.
 */
import type { UserConfig } from '../../config/types.js';
import { ApiError } from '../../errors.js';
import { defined, optionalText, type ParameterSchema, type Raw, text } from '../params.js';
import type { Caller } from '../rules.js';
import type { AccessStorage, ConfigChangeOptions } from '../storage.js';

interface OperationBase<P> {
  /** The stable name, `resource.verb`: the manager's socket and its logs use it. */
  readonly name: string;
  readonly summary: string;
  /** Proxmox VE's parameters of the API call: path, query and body in one flat object. */
  readonly parameters: ParameterSchema;
  /** The API's parameters (already checked against `parameters`) as this operation's params. */
  fromApi(input: Raw): P;
  /** Params that crossed a process boundary, checked; ParameterError when malformed. */
  parse(raw: Raw): P;
  /** The privilege rule: throws PermissionError unless `caller` may do this on `config`. */
  authorize(caller: Caller, params: NoInfer<P>, config: UserConfig): void;
}

/** Runs on a process's (cached) config, wherever the request arrives. */
export interface ReadOperation<P, R> extends OperationBase<P> {
  readonly access: 'read';
  run(config: UserConfig, caller: Caller, params: NoInfer<P>): R;
}

/** Changes the files: runs in the manager, or in tokenctl. */
export interface WriteOperation<P, R> extends OperationBase<P> {
  readonly access: 'write';
  run(writer: Writer, params: NoInfer<P>): Promise<R>;
  /** The token id this operation deletes, if it deletes one: its last use is forgotten after. */
  deletedToken?(params: NoInfer<P>): string;
  /** The token ids a bulk change removed, from its answer: their last use is forgotten after. */
  revokedTokens?(result: NoInfer<R>): readonly string[];
}

export type Operation<P = never, R = unknown> = ReadOperation<P, R> | WriteOperation<P, R>;

/**
 * Where the write operations keep their changes: the files (FileStorage) or,
 * in multi-host mode, etcd (src/cluster's EtcdStorage). See storage.ts.
 */
export type Stores = AccessStorage;

/**
 * The stores as one write operation sees them: every look at the config
 * checks the operation's privilege rule first, on that same config.
 */
/** What a write may need besides the stores, where the runner has it. */
export interface WriteContext {
  /** Each token's last use (epoch seconds) as the host's ledger has it now. */
  lastUses?: LastUses;
}

/** The host's last-use ledger: a lookup, and how often uses reach it (ms). */
export interface LastUses {
  intervalMs: number;
  lookup(): Promise<(tokenid: string) => number | undefined>;
}

export class Writer {
  readonly #storage: AccessStorage;
  readonly #authorize: (config: UserConfig) => void;
  readonly #context: WriteContext;

  constructor(stores: Stores, authorize: (config: UserConfig) => void, context: WriteContext = {}) {
    this.#storage = stores;
    this.#authorize = authorize;
    this.#context = context;
  }

  /** The host's last-use ledger; a 400 where this runner keeps none. */
  lastUses(): LastUses {
    if (this.#context.lastUses === undefined) {
      throw new ApiError(400, 'no record of last uses here', {
        'last-used-before': 'not known here',
      });
    }
    return this.#context.lastUses;
  }

  /** Reads the fresh config (no lock): for checks made before a secret is written. */
  async check<T>(fn: (config: UserConfig) => T): Promise<T> {
    const config = await this.#storage.readConfig();
    this.#authorize(config);
    return fn(config);
  }

  /**
   * Changes the config; the change is stored and announced everywhere when
   * this returns, with the secrets `options.secretsToDelete` names removed.
   */
  change<T>(fn: (config: UserConfig) => T, options?: ConfigChangeOptions<T>): Promise<T> {
    return this.#storage.mutateConfig((config) => {
      this.#authorize(config);
      return fn(config);
    }, options);
  }

  /**
   * A change of tokens only (see AccessStorage.mutateTokens): what `change`
   * does to anything else must be told by `options.changesMoreThanTokens`.
   */
  changeTokens<T>(fn: (config: UserConfig) => T, options?: ConfigChangeOptions<T>): Promise<T> {
    const storage = this.#storage;
    const guarded = (config: UserConfig) => {
      this.#authorize(config);
      return fn(config);
    };
    return storage.mutateTokens === undefined
      ? storage.mutateConfig(guarded, options)
      : storage.mutateTokens(guarded, options);
  }

  /**
   * A new random secret for `tokenid`, stored as a hash; returned once. With
   * `keepPrevious` the one it replaces stays as the previous secret (grace).
   */
  newSecret(tokenid: string, keepPrevious = false): Promise<string> {
    return this.#storage.newSecret(tokenid, keepPrevious);
  }

  deleteSecret(tokenid: string): Promise<boolean> {
    return this.#storage.deleteSecret(tokenid);
  }
}

export function read<P, R>(op: Omit<ReadOperation<P, R>, 'access'>): ReadOperation<P, R> {
  return Object.freeze({ ...op, access: 'read' });
}

export function write<P, R>(op: Omit<WriteOperation<P, R>, 'access'>): WriteOperation<P, R> {
  return Object.freeze({ ...op, access: 'write' });
}

/** The rule of an operation anyone authenticated may run. */
export const anyone = (): void => undefined;

const NONE: ParameterSchema = { type: 'object', properties: {} };

/** What an operation that takes no parameters (a list of everything) has for them. */
export const noParameters = Object.freeze({
  parameters: NONE,
  fromApi: (): Record<string, never> => ({}),
  parse: (): Record<string, never> => ({}),
});

/** The params of a create that takes an id and an optional comment (a group, a pool). */
export function idAndComment<K extends string>(id: K) {
  type Params = Record<K, string> & { comment?: string };
  return {
    fromApi: (input: Raw) =>
      defined({
        [id]: input[id] as string,
        comment: input.comment as string | undefined,
      }) as Params,
    parse: (raw: Raw) =>
      defined({ [id]: text(raw, id), comment: optionalText(raw, 'comment') }) as Params,
  };
}

/** Runs a read operation on `config`: its rule, then its run. */
export function runRead<P, R>(
  op: ReadOperation<P, R>,
  config: UserConfig,
  caller: Caller,
  params: P,
): R {
  op.authorize(caller, params, config);
  return op.run(config, caller, params);
}

/** Runs a write operation on the stores, its rule checked on every config it touches. */
export function runWrite<P, R>(
  op: WriteOperation<P, R>,
  stores: Stores,
  caller: Caller,
  params: P,
  context: WriteContext = {},
): Promise<R> {
  const authorize = (config: UserConfig) => op.authorize(caller, params, config);
  return op.run(new Writer(stores, authorize, context), params);
}

export type { Caller } from '../rules.js';
export type { ParameterSchema, Raw };
