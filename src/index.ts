/** token-shadow: the public face of the library. */

export * from './access/index.js';
export * from './config/index.js';
export * from './errors.js';
export * from './generations/index.js';
export * from './hashing/index.js';
export * from './http/index.js';
export * from './ids.js';
export * from './shadow/index.js';
