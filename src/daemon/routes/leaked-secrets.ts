/**
 * POST /access/leaked-secrets: anyone who found a secret of ours (a secret
 * scanner, a user who pasted one) reports it, without authenticating, and
 * the token it belongs to is revoked; as GitHub's credential revocation API.
 * Not a Proxmox VE endpoint: the name says what is sent (secrets, found
 * leaked) rather than what the server may do with them, and sits beside the
 * bulk revocation under /access.
 *
 * The worker checks the shape (1 to MAX_REPORTED_SECRETS strings, a small
 * body: 400 otherwise) and forwards the secrets to the manager with the
 * reporter's address (behind a trusted proxy, the client it names, as the
 * penalties find it). The manager charges the source's budget (429 past
 * it), checks the secrets and durably receives the report before it
 * answers; the answer is 202 and `{"data":null}` whether or not anything
 * matched (src/daemon/leak-intake.ts).
 */
import type { FastifyInstance } from 'fastify';
import { ParameterError } from '../../errors.js';
import { normaliseAddress, type SourcePenalties } from '../../http/source-penalties.js';
import { MAX_REPORTED_SECRET_LENGTH, MAX_REPORTED_SECRETS } from '../../service/operations.js';
import { LEAK_REPORT_OP } from '../leak-intake.js';
import { relayedError } from '../rpc.js';
import type { RouteContext } from './operation.js';

export const LEAKED_SECRETS_PATH = '/access/leaked-secrets';
/** Room for MAX_REPORTED_SECRETS of the longest secrets in any encoding, and no more. */
const BODY_LIMIT = 16 * 1024;

// summary and operationId are for the API's description (../openapi.ts); fastify ignores them.
const description = {
  body: {
    type: 'object',
    required: ['secrets'],
    properties: {
      secrets: {
        type: 'array',
        minItems: 1,
        maxItems: MAX_REPORTED_SECRETS,
        items: { type: 'string', minLength: 1, maxLength: MAX_REPORTED_SECRET_LENGTH },
        description:
          'the secrets found (a JSON list, repeated form fields, or one field separated by commas or spaces)',
      },
    },
  },
  // 202 (accepted: the revocations run after the answer), the same body whatever matched.
  response: {
    202: { type: 'object', required: ['data'], properties: { data: { type: 'null' } } },
  },
  summary:
    'report leaked secrets (no authentication): the tokens they belong to are revoked; 202 whether or not any matched',
  operationId: LEAK_REPORT_OP,
};

/** The secrets of the body: each item may hold several, as PVE's list parameters do. */
function secretsOf(items: readonly string[]): string[] {
  const secrets = items.flatMap((item) => item.split(/[,;\s]+/).filter((s) => s.length > 0));
  if (secrets.length === 0 || secrets.length > MAX_REPORTED_SECRETS) {
    throw new ParameterError(`secrets must list 1 to ${MAX_REPORTED_SECRETS} secrets`, {
      secrets: 'invalid',
    });
  }
  return secrets;
}

export function registerLeakedSecretRoutes(
  api: FastifyInstance,
  ctx: RouteContext,
  penalties: SourcePenalties | null,
): void {
  api.route({
    method: 'POST',
    url: LEAKED_SECRETS_PATH,
    bodyLimit: BODY_LIMIT,
    schema: description,
    handler: async (request, reply) => {
      const secrets = secretsOf((request.body as { secrets: string[] }).secrets);
      const peer = request.socket.remoteAddress;
      const client =
        penalties?.clients.of(peer, request.headers['x-forwarded-for']) ??
        normaliseAddress(peer ?? '');
      // No credential: the manager serves this op to anyone, charged to the reporter's address.
      const response = await ctx.rpc.call(LEAK_REPORT_OP, '', { secrets }, client);
      if (!response.ok) {
        if (response.status === 429) reply.header('retry-after', '1');
        throw relayedError(response);
      }
      return reply.code(202).send({ data: null });
    },
  });
}
