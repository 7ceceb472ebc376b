/**
 * The README's examples run as written: every `ts` (and `js`) block is
 * compiled with tsc against the package's own types, as an app that depends
 * on token-shadow would, then run. Blocks that start a server run until they
 * print their URL; the test then calls the route they guard with and without
 * a token, and stops them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GenerationPage, HashPool, TokenShadow } from '../src/index.js';
import { runChild, startChild } from './helpers/children.js';
import { CHECKOUT } from './helpers/package-copy.js';
import { FAST_ARGON2 } from './helpers/shadow.js';
import { tempDir } from './helpers/tmp.js';

interface Block {
  lang: string;
  code: string;
  /** Line in README.md where the block starts, for messages. */
  line: number;
}

function readmeBlocks(): Block[] {
  const text = readFileSync(path.join(CHECKOUT, 'README.md'), 'utf8');
  return [...text.matchAll(/^```(ts|js)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] as string,
    code: m[2] as string,
    line: text.slice(0, m.index).split('\n').length,
  }));
}

/** An app directory where `token-shadow` is this checkout and the rest its node_modules. */
function app(blocks: Block[]): string {
  const root = tempDir('token-shadow-readme-');
  symlinkSync(path.join(CHECKOUT, 'node_modules'), path.join(root, 'node_modules'));
  const dir = path.join(root, 'app');
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  symlinkSync(CHECKOUT, path.join(dir, 'node_modules', 'token-shadow'));
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
  const compilerOptions = {
    target: 'es2022',
    module: 'nodenext',
    strict: true,
    types: ['node'],
    skipLibCheck: true,
    outDir: 'out',
    rootDir: '.',
  };
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions }));
  blocks.forEach((block, i) => {
    writeFileSync(path.join(dir, `example-${i}.${block.lang}`), block.code);
  });
  return dir;
}

const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));
const blocks = readmeBlocks();
const isServer = (block: Block) => /\.listen\(/.test(block.code);

describe('README examples', () => {
  it('has a library example and a server example per framework', () => {
    assert.ok(blocks.some((b) => b.code.includes('generateAndSetSecret')));
    assert.ok(blocks.some((b) => isServer(b) && b.code.includes("from 'fastify'")));
    assert.ok(blocks.some((b) => isServer(b) && b.code.includes("from 'express'")));
  });

  it('compile against the package types and run as written', async () => {
    const dir = app(blocks);
    const tsc = path.join(CHECKOUT, 'node_modules', 'typescript', 'bin', 'tsc');
    const compiled = spawnSync(process.execPath, [tsc, '-p', dir, '--allowJs'], {
      encoding: 'utf8',
    });
    assert.equal(compiled.status, 0, `tsc:\n${compiled.stdout}${compiled.stderr}`);
    const script = (i: number) => path.join(dir, 'out', `example-${i}.js`);

    for (const [i, block] of blocks.entries()) {
      if (isServer(block)) continue;
      const run = await runChild(script(i), [], { cwd: dir });
      assert.equal(run.code, 0, `README.md:${block.line}: ${run.stderr}`);
      if (block.code.includes('generateAndSetSecret')) {
        assert.equal(run.stdout, 'true\ntrue\njoe@pve!ci\nfalse\n', `README.md:${block.line}`);
      }
    }

    // The library example recorded its page next to the files (the first process on them).
    const example = path.join(dir, 'token-shadow-example');
    const recorded = path.join(example, 'run', 'shmem', 'config-versions');
    assert.equal(readFileSync(path.join(example, 'generation-page'), 'utf8'), `${recorded}\n`);

    // The library example revoked its token: give it a secret again for the servers.
    const page = GenerationPage.open(recorded);
    const pool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
    const shadow = new TokenShadow({ path: path.join(example, 'token.shadow'), page, pool });
    let secret = await shadow.generateAndSetSecret('joe@pve!ci');
    await pool.close();
    page.close();
    // tokenctl pointed at the same files but given another runtime directory (so another
    // page by the path rule): its revocations must still reach the running apps at once.
    const elsewhere = tempDir('token-shadow-readme-run-');

    for (const [i, block] of blocks.entries()) {
      if (!isServer(block)) continue;
      const route = /app\.get\('([^']+)'/.exec(block.code)?.[1];
      assert.ok(route, `README.md:${block.line}: no app.get route`);
      const server = startChild(script(i), [], { cwd: dir, env: { PORT: '0' } });
      try {
        const base = (await server.nextLine()).trim();
        assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, `README.md:${block.line}`);
        const refused = await fetch(`${base}${route}`);
        assert.equal(refused.status, 401, `README.md:${block.line}`);
        assert.deepEqual(await refused.json(), { data: null });
        const answered = await fetch(`${base}${route}`, {
          headers: { authorization: `PVEAPIToken=joe@pve!ci=${secret}` },
        });
        assert.equal(answered.status, 200, `README.md:${block.line}: ${server.stderr()}`);
        assert.deepEqual(await answered.json(), {
          authid: 'joe@pve!ci',
          userid: 'joe@pve',
          tokenName: 'ci',
        });

        // The app now holds the secret in its cache; tokenctl, another process, rotates it.
        const rotated = await runChild(TOKENCTL, [
          '--config-dir',
          example,
          '--runtime-dir',
          elsewhere,
          '--output',
          'json',
          'token',
          'rotate',
          'joe@pve!ci',
        ]);
        assert.equal(rotated.code, 0, `tokenctl: ${rotated.stderr}`);
        const revoked = await fetch(`${base}${route}`, {
          headers: { authorization: `PVEAPIToken=joe@pve!ci=${secret}` },
        });
        assert.equal(
          revoked.status,
          401,
          `README.md:${block.line}: the app still accepts the secret tokenctl revoked`,
        );
        secret = (JSON.parse(rotated.stdout) as { value: string }).value;
        const current = await fetch(`${base}${route}`, {
          headers: { authorization: `PVEAPIToken=joe@pve!ci=${secret}` },
        });
        assert.equal(current.status, 200, `README.md:${block.line}: ${server.stderr()}`);
      } finally {
        server.process.kill('SIGTERM');
      }
    }
  });
});
