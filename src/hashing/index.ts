export { makeLegacyHash } from './legacy.js';
export {
  type Argon2Params,
  DEFAULT_ARGON2,
  type HashKind,
  hashKind,
  isLegacyHash,
} from './params.js';
export { HashPool, type HashPoolOptions, type HashPoolStats, uvThreadpoolSize } from './pool.js';
