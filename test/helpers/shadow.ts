import path from 'node:path';
import { after } from 'node:test';
import {
  GenerationPage,
  HashPool,
  type TokenShadow,
  type TokenShadowOptions,
} from '../../src/index.js';
import { tokenShadowForTests } from '../../src/shadow/token-shadow.js';
import { tempDir } from './tmp.js';

/** Cheap argon2 parameters: tests check behaviour, not hash strength. */
export const FAST_ARGON2 = { memoryCost: 512, timeCost: 1 };

export interface Setup {
  dir: string;
  shadowPath: string;
  pagePath: string;
  page: GenerationPage;
  pool: HashPool;
  now: { ms: number };
  make(options?: Partial<TokenShadowOptions>): TokenShadow;
}

/** A temp dir with a page and a pool, closed after the test file. */
export function setup(poolOptions: { threads?: number; maxQueue?: number } = {}): Setup {
  const dir = tempDir();
  const shadowPath = path.join(dir, 'token.shadow');
  const pagePath = path.join(dir, 'config-versions');
  const page = GenerationPage.open(pagePath);
  const pool = new HashPool({ threads: 1, maxQueue: 64, ...poolOptions, argon2: FAST_ARGON2 });
  after(() => pool.close());
  const now = { ms: 0 };
  return {
    dir,
    shadowPath,
    pagePath,
    page,
    pool,
    now,
    make: (options = {}) =>
      tokenShadowForTests({
        path: shadowPath,
        page,
        pool,
        ttlMs: 1000,
        clock: () => now.ms,
        lock: { staleMs: 2000 },
        ...options,
      }),
  };
}
