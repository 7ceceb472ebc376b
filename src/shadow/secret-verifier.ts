/**
 * What the Authenticator and the leak intake ask of wherever the secrets'
 * hashes are kept: token.shadow (TokenShadow) or the token database
 * (src/store/database-secrets.ts). An id is a token id, or the key of its
 * previous secret during a rotation's grace (previousSecretId).
 */
import type { TokenShadowStats } from './token-shadow.js';

export interface SecretVerifier {
  /** The fast path alone: true when the cache proves `secret` right for `id` now. */
  verifyCached(id: string, secret: string): true | undefined;
  /** Whether `secret` is the secret stored under `id` (cache, else one hash). */
  verifySecret(id: string, secret: string): Promise<boolean>;
  /** verifySecret without its hash: true when the cache proves it once checked fresh. */
  verifyWithoutHashing(id: string, secret: string): Promise<true | undefined>;
  /** Always exactly one hash, never the cache (a caller whose timing must not tell). */
  verifyHashed(id: string | null, secret: string): Promise<boolean>;
  stats(): TokenShadowStats;
  /** Makes the throwaway hash of unknown ids before the first request needs it. */
  warmUp(): Promise<void>;
}
