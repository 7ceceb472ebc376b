export {
  EMPTY_SNAPSHOT,
  parseShadow,
  readShadow,
  type ShadowSnapshot,
  serializeShadow,
} from './file.js';
export {
  MAX_SECRET_LENGTH,
  TokenShadow,
  type TokenShadowHooks,
  type TokenShadowOptions,
  type TokenShadowStats,
} from './token-shadow.js';
export { VerifiedSecretCache } from './verified-cache.js';
