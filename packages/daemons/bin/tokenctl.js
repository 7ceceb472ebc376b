#!/usr/bin/env node
// tokenctl: its code ships with the library in the token-shadow package (next to this one);
// this package brings the dependencies it and the daemons need.
let entry;
try {
  entry = new URL('dist/src/cli/tokenctl.js', import.meta.resolve('token-shadow/package.json'));
} catch {
  process.stderr.write(
    'tokenctl: the token-shadow package is not installed next to token-shadow-daemons; install both\n',
  );
  process.exit(1);
}
const { main } = await import(entry.href);
// `tokenctl token list | head -1` closes the pipe early: not an error worth a stack trace.
process.stdout.on('error', (error) => {
  if (error.code !== 'EPIPE') throw error;
});
// exitCode rather than exit(): let stdout drain; nothing else keeps the process alive.
process.exitCode = await main(process.argv.slice(2));
