export {
  hashCostProblem,
  MAX_ARGON2_MEMORY_KIB,
  MAX_SHA_CRYPT_ROUNDS,
  MAX_YESCRYPT_BYTES,
} from './cost.js';
export { makeLegacyHash } from './legacy.js';
export {
  type Argon2Params,
  DEFAULT_ARGON2,
  type HashKind,
  hashKind,
  isLegacyHash,
} from './params.js';
export { HashPool, type HashPoolOptions, type HashPoolStats, uvThreadpoolSize } from './pool.js';
