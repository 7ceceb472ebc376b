/**
 * Every error this library throws on purpose, in one place, so that callers can
 * branch on `instanceof` or `code` instead of parsing messages. Messages never
 * contain a secret or a hash: values from outside are quoted with `quote()`.
 */

/** Escapes control and non-ASCII characters and truncates, for quoting untrusted input. */
export function quote(value: string, max = 64): string {
  const cut = value.length > max ? `${value.slice(0, max)}...` : value;
  return JSON.stringify(cut).replace(/[\u007f-\uffff]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Base class: `code` is stable and meant for programs, `message` for people. */
export class TokenShadowError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type GenerationPageProblem =
  | 'not-found'
  | 'permission-denied'
  | 'not-regular-file'
  | 'wrong-size'
  | 'wrong-magic'
  | 'read-only'
  | 'closed'
  | 'addon-unavailable'
  | 'io';

/** The shared generation page could not be opened or used. */
export class GenerationPageError extends TokenShadowError {
  readonly path: string;
  readonly problem: GenerationPageProblem;
  constructor(path: string, problem: GenerationPageProblem, detail: string) {
    super(`ERR_GENERATION_PAGE_${problem.toUpperCase().replace(/-/g, '_')}`, `${path}: ${detail}`);
    this.path = path;
    this.problem = problem;
  }
}

/** A user id, token id or token name that does not follow the id grammar. */
export class InvalidIdError extends TokenShadowError {
  constructor(kind: string, value: string, reason: string) {
    super('ERR_INVALID_ID', `invalid ${kind} ${quote(value)}: ${reason}`);
  }
}
