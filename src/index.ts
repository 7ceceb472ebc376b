/** token-shadow: the public face of the library. */
export * from './errors.js';
export * from './generations/index.js';
export * from './ids.js';
export * from './hashing/index.js';
export * from './shadow/index.js';
