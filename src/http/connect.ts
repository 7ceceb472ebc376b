/**
 * The connect/Express face: middleware that sets `req.identity` or answers as
 * the daemon does (401 `{"data":null}`, 503 with a message). It uses only
 * node:http's request and response, so Express is not needed to load it.
 * Server faults go to `next(error)`, the framework's error handling.
 *
 *   app.use(tokenAuthMiddleware({ users, shadow }));
 *   app.get('/me', (req, res) => res.json(req.identity));
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from './authenticate.js';
import { requestGuard, type TokenAuthOptions } from './guard.js';

declare global {
  namespace Express {
    interface Request {
      /** The token's identity, set by tokenAuthMiddleware. */
      identity?: Identity;
    }
  }
}

export type TokenAuthRequest = IncomingMessage & { identity?: Identity };

export type TokenAuthMiddleware = (
  req: TokenAuthRequest,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void;

export function tokenAuthMiddleware(options: TokenAuthOptions): TokenAuthMiddleware {
  const guard = requestGuard(options);
  return (req, res, next) => {
    guard(req).then((outcome) => {
      if ('identity' in outcome) {
        req.identity = outcome.identity;
        next();
        return;
      }
      const body = JSON.stringify(outcome.refusal.body);
      res.statusCode = outcome.refusal.status;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.setHeader('content-length', Buffer.byteLength(body));
      res.end(body);
    }, next);
  };
}
