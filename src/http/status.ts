/**
 * The one mapping from an error to the HTTP answer it deserves, used by the
 * API routes and by the manager (whose socket answers carry the same status,
 * relayed by the worker as an ApiError). The layers below raise domain errors
 * (PermissionError, ParameterError, ConfigError...) and know no statuses.
 * A status of 500 is a server fault: its message is never shown to a client
 * (it may name a path or a file problem), only logged by code.
 */
import {
  ApiError,
  AuthenticationError,
  BusyError,
  ClusterError,
  ConfigError,
  GenerationPageError,
  InvalidIdError,
  ParameterError,
  PermissionError,
  TokenShadowError,
} from '../errors.js';

export interface HttpFailure {
  status: number;
  /** Safe to show the client. */
  message: string;
  /** Per-parameter messages, as Proxmox VE reports a 400. */
  errors?: Record<string, string>;
}

export const INTERNAL_ERROR = 'internal error';

function statusOf(error: unknown): number {
  if (error instanceof ApiError) return error.status;
  if (error instanceof AuthenticationError) return 401;
  if (error instanceof PermissionError) return 403;
  if (error instanceof ParameterError) return 400;
  if (error instanceof BusyError) return 503;
  // A process maps an older page this writer cannot bump: nothing was changed, try again.
  if (error instanceof GenerationPageError && error.problem === 'unreachable') return 503;
  // etcd unreachable or refusing us, or a change that kept losing its compare: try again.
  if (error instanceof ClusterError) return error.problem === 'not-configured' ? 500 : 503;
  if (error instanceof InvalidIdError) return 400;
  if (error instanceof ConfigError) {
    if (error.problem === 'insecure') return 500; // user.cfg may not be trusted: our fault, not the client's
    return error.problem === 'not-found' ? 404 : 400;
  }
  // Framework errors that are the client's (413 body too large, 415 content type, ...).
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return status;
  return 500;
}

/** The status, message and parameter errors for `error`; anything unknown is a bare 500. */
export function httpFailureOf(error: unknown): HttpFailure {
  const status = statusOf(error);
  if (status >= 500 && status !== 503) return { status, message: INTERNAL_ERROR };
  const message = error instanceof Error ? error.message : INTERNAL_ERROR;
  const errors =
    error instanceof ApiError || error instanceof ParameterError ? error.errors : undefined;
  return { status, message, ...(errors ? { errors } : {}) };
}

/** What a log may say about a failure: its stable code, never a message that could quote input. */
export function errorCode(error: unknown): string {
  return error instanceof TokenShadowError ? error.code : String(error);
}
