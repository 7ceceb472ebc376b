/**
 * Fuzzing with fast-check: every parser that reads input from outside
 * (Authorization headers, ids, user.cfg lines and files, token.shadow) and the
 * native paths (opening the generation page, crypt verification). No input
 * may crash or hang them, and every rejection must be the typed error of that
 * parser. 10,000 inputs per target in `npm test`, 1,000,000 in all in the
 * long mode. Set RELIABILITY_SEED to replay a run.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SLOT_COUNT } from '../../src/generations/slots.js';
import {
  AuthenticationError,
  GenerationPage,
  GenerationPageError,
  InvalidIdError,
  isAuthid,
  parseAuthid,
  parseAuthorizationHeader,
  parseTokenid,
  parseUserConfig,
  parseUserid,
  ShadowFileError,
  TOKEN_SCHEMES,
  writeUserConfig,
} from '../../src/index.js';
import { loadAddon } from '../../src/native.js';
import { parseShadow, serializeShadow } from '../../src/shadow/file.js';
import { tempDir } from '../helpers/tmp.js';
import { LONG, newSeed, pick, prng, report } from './common.js';

const SEED = Number(process.env.RELIABILITY_SEED ?? newSeed());
/** Inputs per target: 10,000 each in quick mode; 1,000,000 in all in the long mode. */
const RUNS = {
  header: pick(10_000, 250_000),
  ids: pick(10_000, 200_000),
  cfgLine: pick(10_000, 150_000),
  cfgFile: pick(10_000, 50_000),
  shadow: pick(10_000, 250_000),
  page: pick(10_000, 50_000),
  crypt: pick(10_000, 50_000),
};
/** Log lines and error messages may only hold printable ASCII (untrusted input is quoted). */
const PRINTABLE = /^[\x20-\x7e]*$/;
const totals = { inputs: 0, targets: 0 };

class Tally {
  inputs = 0;
  accepted = 0;
  rejected = new Map<string, number>();
  maxMs = 0;
  started = performance.now();
  reject(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }
  /** Runs one input, timing it: a hang would show as a huge maximum. */
  time<T>(fn: () => T): T {
    this.inputs++;
    const started = performance.now();
    try {
      return fn();
    } finally {
      this.maxMs = Math.max(this.maxMs, performance.now() - started);
    }
  }
  print(target: string, runs: number): void {
    totals.inputs += this.inputs;
    totals.targets++;
    const reasons = [...this.rejected].sort((a, b) => b[1] - a[1]);
    report(`fuzz: ${target}`, [
      `${this.inputs} inputs, 0 crashes, every rejection typed (${this.accepted} accepted, ` +
        `${this.inputs - this.accepted} rejected)`,
      `rejections: ${reasons.map(([r, n]) => `${r} ${n}`).join(', ') || 'none'}`,
      `slowest input: ${this.maxMs.toFixed(2)} ms; ` +
        `${((performance.now() - this.started) / 1000).toFixed(1)} s in all; seed ${SEED}`,
    ]);
    assert.equal(this.inputs, runs);
    assert.ok(this.maxMs < 2000, `an input took ${this.maxMs} ms: a hang?`);
  }
}

function run<T>(arbitrary: fc.Arbitrary<T>, runs: number, check: (value: T) => void): void {
  fc.assert(fc.property(arbitrary, check), {
    numRuns: runs,
    seed: SEED,
    endOnFailure: true,
    includeErrorInReport: true,
  });
}

// --- shared arbitraries ---------------------------------------------------------

const ID_CHARS = [
  ...'abcXYZ019_-.@!:=%/ ',
  '\t',
  '\n',
  '\u0000',
  '\u007f',
  '\u0085',
  'é',
  '日',
  '\ud800', // lone surrogates: JSON bodies can carry them
  '\udc00',
];
const looseId = fc.string({ unit: fc.constantFrom(...ID_CHARS), maxLength: 70 });
const userName = fc.oneof(
  fc.stringMatching(/^[a-z0-9._@!-]{1,12}$/),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
);
const realm = fc.oneof(
  fc.constantFrom('pam', 'pve', 'ldap-1', 'a', 'x'.repeat(33), '1pve', 'pve!'),
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9._-]{0,33}$/),
);
const tokenName = fc.oneof(
  fc.constantFrom('ci', 't', '_x', '.x', '-x', 'a!b', ''),
  fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/),
);
const structuredId = fc
  .tuple(userName, realm, fc.option(tokenName, { nil: undefined }))
  .map(([name, r, token]) => `${name}@${r}${token === undefined ? '' : `!${token}`}`);
const anyId = fc.oneof(structuredId, looseId, fc.string({ unit: 'binary', maxLength: 80 }));

// --- 1. Authorization headers ------------------------------------------------------

const secret = fc.oneof(
  fc.uuid(),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('%', '0', 'a', 'F', 'G', '=', ':', '%00', '%ff', '%C3%A9', '%e2%82'),
    maxLength: 20,
  }),
  fc.nat(700).map((n) => 'x'.repeat(n)),
);
const structuredHeader = fc
  .tuple(
    fc.constantFrom(...TOKEN_SCHEMES, 'pveapitoken', 'PVEAPITok', 'Bearer', 'PVEAPITokenX', ''),
    fc.constantFrom(' ', '=', '', ':', '\t', '  '),
    anyId,
    fc.constantFrom('=', ':', '', '=='),
    secret,
  )
  .map((parts) => parts.join(''));
const plausibleHeader = fc
  .tuple(fc.constantFrom(...TOKEN_SCHEMES), fc.constantFrom(' ', '='), structuredId, secret)
  .map(([scheme, sep, id, s]) => `${scheme}${sep}${id}${scheme === 'PVEAPIToken' ? '=' : ':'}${s}`);
const header = fc.oneof(
  { weight: 4, arbitrary: plausibleHeader },
  { weight: 4, arbitrary: structuredHeader },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 120 }) },
  { weight: 1, arbitrary: fc.nat(5000).map((n) => `PVEAPIToken=a@pve!t=${'x'.repeat(n)}`) },
);
const headerValue = fc.oneof(
  { weight: 8, arbitrary: header },
  { weight: 1, arbitrary: fc.array(header, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, '', [] as string[]) },
);

// --- 3. user.cfg -------------------------------------------------------------------

const cfgField = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '',
      '0',
      '1',
      '2',
      '-1',
      '1700000000',
      '99999999999999999999',
      'root@pam',
      'joe@pve',
      'joe@pve!ci',
      'joe@pve!t!x',
      'ann@pve',
      '@admins',
      'admins',
      'g.1',
      'PVEAuditor',
      'Administrator',
      'NoAccess',
      'Custom',
      'VM.Audit',
      'Sys.Audit,VM.Audit;Bogus',
      '/',
      '/vms',
      '/vms/100',
      '//a//b/',
      '/a/../b',
      'vms',
      'joe@pve,ann@pve @admins',
      'joe@pve!ci,root@pam',
      '%3A',
      '%',
      '%zz',
      'x%20y',
      'é',
      'a b',
      'mail@example.com',
      'x!yubico',
      '\u0000',
      '\uD800',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 16 }) },
  { weight: 1, arbitrary: anyId },
);
const cfgLine = fc
  .tuple(
    fc.constantFrom('user', 'token', 'group', 'role', 'acl', 'pool', '', '#', 'USER', ' acl', 'x'),
    fc.array(cfgField, { maxLength: 10 }),
    fc.constantFrom('', ':', '::', ' ', '\r'),
  )
  .map(([type, fields, end]) => `${[type, ...fields].join(':')}${end}`);
const cfgFile = fc.oneof(
  fc.array(cfgLine, { maxLength: 24 }).map((lines) => lines.join('\n')),
  fc.array(cfgLine, { maxLength: 8 }).map((lines) => `\ufeff${lines.join('\r\n')}\n`),
  fc.string({ unit: 'binary', maxLength: 200 }),
);
const dialect = fc.constantFrom('token-shadow' as const, 'pve' as const);

/** Parsing never throws for text; what it accepted must write, re-read cleanly and be a fixed point. */
function checkUserConfig(tally: Tally, text: string, d: 'token-shadow' | 'pve'): void {
  const parsed = tally.time(() => parseUserConfig(text, { dialect: d }));
  const lineCount = text.split('\n').length;
  for (const w of parsed.warnings) {
    assert.ok(w.line >= 1 && w.line <= lineCount, `warning for line ${w.line}`);
    assert.match(w.message, PRINTABLE);
  }
  if (parsed.warnings.length === 0) tally.accepted++;
  else tally.reject(`${parsed.warnings.length > 1 ? 'warnings' : 'warning'}`);
  const written = writeUserConfig(parsed.config);
  const again = parseUserConfig(written);
  assert.deepEqual(again.warnings, [], `our own output does not re-read cleanly:\n${written}`);
  assert.equal(writeUserConfig(again.config), written, 'write(parse(write(c))) != write(c)');
}

// --- 4. token.shadow ---------------------------------------------------------------

const shadowKey = fc.oneof(structuredId, fc.string({ maxLength: 12 }));
const shadowText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .dictionary(
      shadowKey,
      fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string())),
    )
    .map((o) => JSON.stringify(o)),
  fc
    .tuple(fc.dictionary(shadowKey, fc.string({ minLength: 1 })), fc.nat(400))
    .map(([o, cut]) => JSON.stringify(o, null, 1).slice(0, cut)),
);
const shadowMap = fc
  .array(fc.tuple(shadowKey, fc.string({ minLength: 1, maxLength: 30 })), { maxLength: 8 })
  .map((pairs) => new Map(pairs));

// --- 5. generation page files --------------------------------------------------------

const MAGIC = Uint8Array.from([0xea, 0xf3, 0xca, 0x65, 0xeb, 0x46, 0x00, 0x5a]);
const pageInput = fc.record({
  size: fc.oneof(
    fc.constantFrom(0, 1, 7, 8, 9, 4088, 4095, 4096, 4096, 4096, 4097, 8192),
    fc.nat(10_000),
  ),
  magic: fc.constantFrom('right', 'right', 'random', 'one-bit-off'),
  seed: fc.nat(),
  create: fc.boolean(),
  readOnly: fc.boolean(),
});

// --- 6. crypt ------------------------------------------------------------------------

const CRYPT64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const crypt64 = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...CRYPT64), minLength: min, maxLength: max });
/**
 * Hash strings: well-formed sha-crypt/yescrypt/md5 settings with random salts
 * and digests, and garbage after every prefix. Cost parameters are bounded
 * (libxcrypt honours whatever a hash asks for; see RELIABILITY.md).
 */
const cryptHash = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('$5$', '$6$'),
      fc.oneof(
        { weight: 12, arbitrary: fc.integer({ min: 0, max: 1200 }) },
        { weight: 1, arbitrary: fc.constant(undefined) },
      ),
      crypt64(0, 20),
      fc.option(crypt64(0, 90), { nil: undefined }),
    )
    .map(([p, rounds, salt, digest]) => {
      const r = rounds === undefined ? '' : `rounds=${rounds}$`;
      return `${p}${r}${salt}${digest === undefined ? '' : `$${digest}`}`;
    }),
  fc
    .tuple(fc.constantFrom('j55', 'j65', 'j75'), crypt64(0, 24), crypt64(0, 50))
    .map(([params, salt, digest]) => `$y$${params}$${salt}$${digest}`),
  fc
    .tuple(
      fc.constantFrom('$1$', '$5$', '$6$', '$y$j7T$', '$argon2id$', '', '$', '*', '$$'),
      fc.string({ unit: 'binary', maxLength: 60 }),
    )
    .map(([prefix, tail]) => `${prefix}${tail}`)
    // No cost parameter may come from the garbage: rounds=, bcrypt, scrypt, BSDi DES...
    .filter((h) => !/rounds=|^(_|\$(2[abxy]?|7|sha1|gy|y|md5)[$,])/.test(h)),
);
const phrase = fc.oneof(
  fc.uuid(),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.constantFrom('right', 'righ', 'right '),
);

describe('reliability: fuzzing', () => {
  it('Authorization headers: credentials or AuthenticationError', () => {
    const tally = new Tally();
    run(headerValue, RUNS.header, (value) => {
      try {
        const c = tally.time(() => parseAuthorizationHeader(value));
        tally.accepted++;
        assert.ok(TOKEN_SCHEMES.includes(c.scheme));
        assert.equal(parseTokenid(c.tokenid).authid, c.tokenid);
        assert.ok(c.secret.length > 0 && Buffer.byteLength(c.secret) <= 512);
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        assert.equal(error.message, 'authentication failed');
        tally.reject(error.reason);
      }
    });
    tally.print('Authorization headers (parseAuthorizationHeader)', RUNS.header);
  });

  it('ids: parsed consistently or InvalidIdError with a printable message', () => {
    const tally = new Tally();
    run(anyId, RUNS.ids, (value) => {
      let id: ReturnType<typeof parseAuthid> | null = null;
      try {
        id = tally.time(() => parseAuthid(value));
      } catch (error) {
        if (!(error instanceof InvalidIdError)) throw error;
        assert.match(error.message, PRINTABLE);
        tally.reject('invalid-id');
      }
      assert.equal(isAuthid(value), id !== null);
      if (id === null) return;
      tally.accepted++;
      assert.equal(id.authid, value);
      assert.equal(id.userid, `${id.name}@${id.realm}`);
      assert.equal(id.authid, id.tokenName === null ? id.userid : `${id.userid}!${id.tokenName}`);
      for (const parse of [parseUserid, parseTokenid]) {
        try {
          parse(value);
        } catch (error) {
          if (!(error instanceof InvalidIdError)) throw error;
        }
      }
    });
    tally.print('ids (parseAuthid, parseUserid, parseTokenid)', RUNS.ids);
  });

  it('user.cfg lines: never throws; what it accepts writes back and re-reads unchanged', () => {
    const tally = new Tally();
    run(fc.tuple(cfgLine, dialect), RUNS.cfgLine, ([line, d]) => checkUserConfig(tally, line, d));
    tally.print('user.cfg lines (parseUserConfig, both dialects)', RUNS.cfgLine);
  });

  it('user.cfg files: never throws; what it accepts writes back and re-reads unchanged', () => {
    const tally = new Tally();
    run(fc.tuple(cfgFile, dialect), RUNS.cfgFile, ([text, d]) => checkUserConfig(tally, text, d));
    tally.print('user.cfg whole files (parseUserConfig, both dialects)', RUNS.cfgFile);
  });

  it('token.shadow: a map of non-empty strings or ShadowFileError that never quotes the content', () => {
    const tally = new Tally();
    const file = '/etc/token-shadow/token.shadow';
    run(fc.oneof(shadowText, shadowMap.map(serializeShadow)), RUNS.shadow, (text) => {
      let entries: Map<string, string>;
      try {
        entries = tally.time(() => parseShadow(file, text));
      } catch (error) {
        if (!(error instanceof ShadowFileError)) throw error;
        assert.match(
          error.message,
          /^\/etc\/token-shadow\/token\.shadow: (not valid JSON \(\d+ bytes\)|expected a JSON object of token id -> hash|entry #\d+ is not a non-empty string|entry #\d+ has a key no token id has)$/,
        );
        tally.reject(error.problem);
        return;
      }
      tally.accepted++;
      for (const [key, value] of entries) {
        assert.equal(typeof key, 'string');
        assert.ok(typeof value === 'string' && value.length > 0);
      }
      // What was accepted is written back exactly (a mutation rewrites what it read).
      if (!entries.has('__proto__')) {
        assert.deepEqual(parseShadow(file, serializeShadow(entries)), entries);
      }
    });
    tally.print('token.shadow (parseShadow)', RUNS.shadow);
  });

  it('generation page files: a working page or GenerationPageError, never SIGBUS', () => {
    const tally = new Tally();
    const dir = tempDir();
    const file = path.join(dir, 'config-versions');
    // Things that are not files at all, tried once each.
    const special = [
      ['directory', () => mkdirSync(file)],
      ['fifo', () => execFileSync('mkfifo', [file])],
      ['symlink to a directory', () => symlinkSync(dir, file)],
      ['dangling symlink', () => symlinkSync(path.join(dir, 'nothing'), file)],
      ['missing', () => undefined],
    ] as const;
    for (const [name, make] of special) {
      rmSync(file, { recursive: true, force: true });
      make();
      try {
        tally.time(() => GenerationPage.open(file, { create: false })).close();
        tally.accepted++;
      } catch (error) {
        assert.ok(error instanceof GenerationPageError, `${name}: ${error}`);
        tally.reject(error.problem);
      }
    }
    run(pageInput, RUNS.page - special.length, (input) => {
      rmSync(file, { recursive: true, force: true });
      const bytes = new Uint8Array(input.size);
      const random = prng(input.seed);
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
      if (input.magic !== 'random') bytes.set(MAGIC.subarray(0, Math.min(8, input.size)));
      if (input.magic === 'one-bit-off' && input.size > 0) {
        const at = Math.floor(random() * Math.min(8, input.size));
        bytes[at] = (bytes[at] as number) ^ (1 << Math.floor(random() * 8));
      }
      writeFileSync(file, bytes);
      const valid =
        input.size === 4096 && Buffer.from(bytes.subarray(0, 8)).equals(Buffer.from(MAGIC));
      let page: GenerationPage;
      try {
        page = tally.time(() =>
          GenerationPage.open(file, { create: input.create, readOnly: input.readOnly }),
        );
      } catch (error) {
        if (!(error instanceof GenerationPageError)) throw error;
        assert.equal(valid, false, `a valid page was refused: ${error.message}`);
        tally.reject(error.problem);
        return;
      }
      try {
        tally.accepted++;
        assert.equal(valid, true, 'an invalid page was opened');
        const view = new DataView(bytes.buffer);
        for (let slot = 0; slot < SLOT_COUNT; slot++) {
          const value = page.load(slot);
          assert.ok(Number.isSafeInteger(value) && value >= 0, `slot ${slot}: ${value}`);
          const stored = view.getBigUint64(8 + 8 * slot, true);
          if (stored <= BigInt(Number.MAX_SAFE_INTEGER)) assert.equal(value, Number(stored));
        }
        if (input.readOnly) {
          assert.throws(() => page.increment(0), GenerationPageError);
        } else {
          // Whatever the stored value (even past 2^53), a bump must be visible to readers.
          const before = page.load(3);
          const after = page.increment(3);
          assert.notEqual(after, before, 'a bump is invisible');
          assert.equal(page.load(3), after);
        }
      } finally {
        page.close();
      }
    });
    tally.print('generation page open (GenerationPage.open, native)', RUNS.page);
  });

  it('crypt verification: a boolean for every phrase and hash, never a crash', () => {
    const tally = new Tally();
    const addon = loadAddon();
    // One real hash per method, so that matching paths run too.
    const real = ['$5$rounds=1000$saltsalt', '$6$rounds=1000$saltsalt', '$y$j55$saltsaltsalt'].map(
      (setting) => addon.cryptHash('right', setting) as string,
    );
    const hashes = fc.oneof(
      { weight: 4, arbitrary: cryptHash },
      { weight: 1, arbitrary: fc.constantFrom(...real) },
    );
    run(fc.tuple(phrase, hashes), RUNS.crypt, ([p, h]) => {
      const ok = tally.time(() => addon.cryptVerify(p, h));
      assert.equal(typeof ok, 'boolean');
      if (ok) tally.accepted++;
      else tally.reject('no match');
      // Only the right phrase verifies: a real hash refuses every other phrase that has no NUL.
      if (real.includes(h) && !p.includes('\u0000')) assert.equal(ok, p === 'right');
    });
    for (const h of real) assert.equal(addon.cryptVerify('right', h), true);
    tally.print('crypt verify (addon.cryptVerify: $5$, $6$, $y$, garbage)', RUNS.crypt);
  });

  it('prints the total', () => {
    report('fuzz: total', [
      `${totals.inputs} inputs over ${totals.targets} targets, 0 crashes, every rejection typed`,
    ]);
    if (LONG) assert.ok(totals.inputs >= 1_000_000, `only ${totals.inputs} inputs`);
  });
});
