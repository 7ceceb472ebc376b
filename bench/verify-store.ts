/**
 * The fast path on the token database beside the files' (issue 25: "the
 * cached verify and the HTTP fast path cost what they cost today"): one
 * deployment on user.cfg + token.shadow, one moved into access.db by
 * `tokenctl database migrate`'s code, each opened as a worker opens it, and
 * per deployment
 *
 * - `verifyCached` of the secrets' side (TokenShadow / DatabaseSecrets);
 * - `Authenticator.authenticateCached` from a request object, as the API's hook calls it;
 * - the same right after another token changed (one bump): what the first request after a
 *   change costs, and that it is still answered from the cache.
 *
 * Rounds alternate between the two so that noise hits both alike; medians of mean ns per call.
 *
 *   npm run build:ts && node dist/bench/verify-store.js [--rounds 9]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import argon2 from 'argon2';
import { Slot } from '../src/generations/slots.js';
import { Authenticator } from '../src/http/authenticate.js';
import { type Deployment, openDeployment } from '../src/service/deployment.js';
import { resolveSettings } from '../src/service/settings.js';
import { moveTokensToDatabase } from '../src/service/token-database-migration.js';
import { serializeShadow } from '../src/shadow/file.js';
import { tokenDatabaseAvailable } from '../src/store/token-database.js';
import { removeTempDir, tempDir } from './lib/children.js';
import { option } from './lib/options.js';
import { fmt, machineLine, median } from './lib/stats.js';
import { printTable } from './lib/table.js';
import { pastRacyWindow } from './lib/tokens.js';

const OPS = 1_000_000;
const ID = 'bench@pve!cached';
const SECRET = 'bench-secret-0123456789abcdef';
let sink = 0;

async function deploymentIn(dir: string, database: boolean): Promise<Deployment> {
  const settings = resolveSettings({
    configDir: path.join(dir, 'etc'),
    runtimeDir: path.join(dir, 'run'),
    workers: 1,
    hashThreads: 1,
  });
  mkdirSync(settings.configDir, { recursive: true });
  mkdirSync(settings.runtimeDir, { recursive: true });
  const hash = await argon2.hash(SECRET, { type: argon2.argon2id, memoryCost: 512, timeCost: 1 });
  writeFileSync(
    settings.userCfgPath,
    `user:bench@pve:1:0::::::\ntoken:${ID}:1:0:0::\ntoken:bench@pve!other:1:0:0::\n`,
    { mode: 0o640 },
  );
  writeFileSync(
    settings.shadowPath,
    serializeShadow(
      new Map([
        [ID, hash],
        ['bench@pve!other', hash],
      ]),
    ),
    { mode: 0o640 },
  );
  const writer = openDeployment(settings, 'cli'); // records and creates the page
  if (database) await moveTokensToDatabase(settings, writer.page);
  await writer.close();
  return openDeployment(settings, 'worker');
}

function timeCalls(fn: () => unknown): number {
  for (let i = 0; i < 10_000; i++) fn(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < OPS; i++) sink += fn() === undefined ? 1 : 0;
  return Number(process.hrtime.bigint() - start) / OPS;
}

async function main(): Promise<void> {
  if (!tokenDatabaseAvailable()) throw new Error(`node:sqlite is not in Node ${process.version}`);
  const rounds = Number(option('rounds', '9'));
  console.log(machineLine());
  const dirs = [tempDir('token-shadow-verify-files-'), tempDir('token-shadow-verify-db-')];
  try {
    const written = Date.now();
    const deployments = await Promise.all(dirs.map((dir, i) => deploymentIn(dir, i === 1)));
    // Files written less than 2 s ago are re-read on every look (their timestamps are racy).
    await pastRacyWindow(written + 1000);
    const sides = await Promise.all(
      deployments.map(async (deployment, i) => {
        const auth = new Authenticator({ users: deployment.users, shadow: deployment.secrets });
        const header = `PVEAPIToken=${ID}=${SECRET}`;
        const request = {
          headers: { authorization: header },
          rawHeaders: ['Authorization', header],
          socket: { remoteAddress: '127.0.0.1' },
        };
        await auth.authenticate(request);
        if (auth.authenticateCached(request) === undefined) {
          const why = { secrets: deployment.secrets.stats(), users: deployment.users.current() };
          throw new Error(`fast path not taken: ${JSON.stringify(why)}`);
        }
        return {
          name: i === 0 ? 'files (TokenShadow)' : 'token database (DatabaseSecrets)',
          deployment,
          auth,
          request,
          verify: [] as number[],
          authenticate: [] as number[],
          afterChange: [] as number[],
          afterChangeHits: 0,
        };
      }),
    );
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
        const { deployment, auth, request } = side;
        side.verify.push(timeCalls(() => deployment.secrets.verifyCached(ID, SECRET)));
        side.authenticate.push(timeCalls(() => auth.authenticateCached(request)));
      }
    }
    // The first request after another token changed: one bump of TOKEN_SHADOW each time.
    for (const side of sides) {
      const page = side.deployment.page;
      if (page === null) throw new Error('no page');
      for (let i = 0; i < 200; i++) {
        if (side.name.startsWith('token database')) {
          const store = openDeployment(side.deployment.settings, 'cli');
          await store.tokenStore?.applyChange(
            {
              entries: [
                {
                  id: 'bench@pve!other',
                  userid: 'bench@pve',
                  entry: { enable: true, expire: 0, privsep: false, comment: `c${i}` },
                },
              ],
              removed: [],
              usersGone: [],
            },
            0,
          );
          await store.close();
        } else {
          page.increment(Slot.TOKEN_SHADOW); // a bare bump: the files' reader re-reads on its slow path
        }
        const start = process.hrtime.bigint();
        const cached = side.auth.authenticateCached(side.request);
        side.afterChange.push(Number(process.hrtime.bigint() - start));
        if (cached === undefined) await side.auth.authenticate(side.request);
        else side.afterChangeHits++;
      }
    }
    const [files, database] = sides as [(typeof sides)[0], (typeof sides)[0]];
    printTable(
      'The fast path on the token database beside the files (median ns per call)',
      ['path', 'files', 'token database', 'ratio'],
      [
        [
          'verifyCached',
          fmt(median(files.verify)),
          fmt(median(database.verify)),
          fmt(median(database.verify) / median(files.verify)),
        ],
        [
          'authenticateCached (request object)',
          fmt(median(files.authenticate)),
          fmt(median(database.authenticate)),
          fmt(median(database.authenticate) / median(files.authenticate)),
        ],
        [
          'first request after another token changed (answered from the cache)',
          `${fmt(median(files.afterChange))} (${files.afterChangeHits} of 200)`,
          `${fmt(median(database.afterChange))} (${database.afterChangeHits} of 200)`,
          '-',
        ],
      ],
    );
    for (const side of sides) await side.deployment.close();
  } finally {
    for (const dir of dirs) removeTempDir(dir);
  }
  if (sink === -1) console.log(sink);
}

await main();
