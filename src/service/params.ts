/**
 * The two ways parameters reach an operation. From the API they are Proxmox
 * VE's flat parameters (path, query and body in one object), already checked
 * against the operation's JSON Schema by fastify, and only need converting.
 * From the manager's socket they are the operation's own typed params, sent
 * by a worker or `npm start`: trusted, but not blindly, so each is checked
 * here and a malformed one is a ParameterError (400).
 */
import { ParameterError } from '../errors.js';

/** Parameters as they arrive, before they are known to be well formed. */
export type Raw = Record<string, unknown>;

/** The JSON Schema of an operation's API parameters (an object of named properties). */
export interface ParameterSchema {
  readonly type: 'object';
  readonly required?: readonly string[];
  readonly properties: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

function invalid(name: string, what: string): never {
  throw new ParameterError(`${name} must be ${what}`, { [name]: 'invalid' });
}

/** A required string parameter. */
export function text(raw: Raw, name: string): string {
  const value = raw[name];
  if (typeof value !== 'string') invalid(name, 'a string');
  return value;
}

/** An optional string parameter: absent, or a string. */
export function optionalText(raw: Raw, name: string): string | undefined {
  return raw[name] === undefined ? undefined : text(raw, name);
}

/** An optional non-negative integer parameter (epoch seconds, say). */
export function optionalCount(raw: Raw, name: string): number | undefined {
  const value = raw[name];
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 0) invalid(name, 'an integer >= 0');
  return value as number;
}

/** An object parameter (absent is empty), e.g. the fields of a new token. */
export function record<T>(raw: Raw, name: string): T {
  const value = raw[name] ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    invalid(name, 'an object');
  }
  return value as T;
}

/** A list parameter of strings (a copy: nothing else of the request is kept). */
export function list(raw: Raw, name: string): string[] {
  const value = raw[name];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    invalid(name, 'a list of strings');
  }
  return [...value];
}

/** A list parameter of integers (VM ids, say); ParameterError otherwise. */
export function integerList(raw: Raw, name: string): number[] {
  const value = raw[name];
  if (!Array.isArray(value) || !value.every((item) => Number.isSafeInteger(item))) {
    invalid(name, 'a list of integers');
  }
  return [...value];
}

/** An optional list parameter of strings. */
export function optionalList(raw: Raw, name: string): string[] | undefined {
  return raw[name] === undefined ? undefined : list(raw, name);
}

/** An optional boolean parameter. */
export function optionalFlag(raw: Raw, name: string): boolean | undefined {
  const value = raw[name];
  if (value !== undefined && typeof value !== 'boolean') invalid(name, 'true or false');
  return value as boolean | undefined;
}

// --- the API's flat parameters -------------------------------------------------

/** PVE's list parameters: comma, semicolon or space separated. */
export function splitList(value: unknown): string[] | undefined {
  if (typeof value !== 'string') return undefined;
  return value
    .split(/[,;\s]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** PVE's boolean parameters: 0 or 1. */
export function flagOf(value: unknown): boolean | undefined {
  return value === undefined ? undefined : value === 1 || value === '1' || value === true;
}

/** The object without its undefined members (the stores treat a present key as a change). */
export function defined<T extends Record<string, unknown>>(object: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(object).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}

// --- schemas of the API's parameters ------------------------------------------

export const schema = {
  flag: { type: 'integer', enum: [0, 1] },
  text: { type: 'string', maxLength: 4096 },
  userid: { type: 'string', minLength: 3, maxLength: 64 },
  tokenName: { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]*$', maxLength: 64 },
  groupid: { type: 'string', pattern: '^[A-Za-z0-9._-]+$' },
  roleid: { type: 'string', pattern: '^[A-Za-z0-9._-]+$', maxLength: 64 },
  expire: { type: 'integer', minimum: 0 },
  list: { type: 'string', maxLength: 65536 },
} as const;
