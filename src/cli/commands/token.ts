/** `tokenctl token ...`: API tokens, with the API's semantics, as root@pam. */
import { readFile } from 'node:fs/promises';
import { text as readStdin } from 'node:stream/consumers';
import { type Command, Option } from 'commander';
import { currentEpochSeconds } from '../../config/active.js';
import { expiringWithin } from '../../config/expiring.js';
import type { TokenFields } from '../../config/users.js';
import { joinTokenid, splitTokenid, type Tokenid } from '../../ids.js';
import { referenceOf } from '../../secret-format.js';
import {
  type CreatedToken,
  type LastUsedFields,
  type TokenInfo,
  withLastUsed,
} from '../../service/answers.js';
import { formatAge } from '../../service/durations.js';
import {
  createToken,
  deleteToken,
  findLeakedTokens,
  listTokens,
  listUsers,
  readToken,
  revokeLeakedToken,
  revokeTokens,
  rotateToken,
  secretsIn,
  updateToken,
} from '../../service/operations.js';
import { type LastUsedRecord, readLastUsed } from '../../usage/file.js';
import {
  aclPathArgument,
  durationArgument,
  expireArgument,
  flagArgument,
  tokenidOf,
  useridArgument,
} from '../arguments.js';
import type { Cli, CliContext } from '../context.js';
import { formatExpire } from '../dates.js';
import { type Column, yesNo } from '../output.js';
import { showPermissions } from './permissions.js';

interface TokenOptions {
  privsep?: boolean;
  expire?: number;
  comment?: string;
  disabled?: boolean;
  /** A bare `--enable` is true; `--enable 0|1` as pveum and PBS take it. */
  enable?: boolean;
  disable?: boolean;
  /** PBS's and the API's `regenerate`: a new secret with the update. */
  regenerate?: boolean;
  /** Comma-separated addresses and CIDRs its requests may come from ('' anywhere). */
  allowedIps?: string;
  /** With a new secret: how long the previous one keeps working, ms. */
  grace?: number;
}

const ALLOWED_IPS_HELP =
  'comma-separated addresses and CIDRs its requests may come from ("" for anywhere)';
const GRACE_HELP =
  'keep the previous secret working this long (e.g. 1h, 7d; at most 30d), as a rotation overlap';

/** The API's `grace` in whole seconds from --grace, when given. */
function graceOf(options: TokenOptions): { grace?: number } {
  return options.grace === undefined ? {} : { grace: Math.ceil(options.grace / 1000) };
}

/** `last-used`: the epoch second of the last use the manager recorded (absent for never), where from. */
export interface TokenRow extends LastUsedFields {
  'full-tokenid': string;
  userid: string;
  tokenid: string;
  enable: 0 | 1;
  expire: number;
  privsep: 0 | 1;
  comment: string;
  /** Whether token.shadow holds a secret for it (not after import-pve until rotated). */
  'has-secret': boolean;
}

/** Where the last use came from, for text: `ADDRESS`, `ADDRESS (HOST)`, `(HOST)`, or `-`. */
function lastUsedFrom(row: LastUsedFields): string {
  const source = row['last-used-source'];
  const host = row['last-used-host'];
  if (host === undefined) return source ?? '-';
  return source === undefined ? `(${host})` : `${source} (${host})`;
}

interface ListOptions {
  /** Milliseconds, from --unused-since. */
  unusedSince?: number;
  /** Milliseconds, from --expiring-within. */
  expiringWithin?: number;
}

function tokenColumns(now: number): Column<TokenRow>[] {
  return [
    { header: 'TOKENID', cell: (t) => t['full-tokenid'] },
    { header: 'ENABLED', cell: (t) => yesNo(t.enable) },
    { header: 'EXPIRE', cell: (t) => formatExpire(t.expire, now) },
    { header: 'PRIVSEP', cell: (t) => yesNo(t.privsep) },
    { header: 'SECRET', cell: (t) => yesNo(t['has-secret']) },
    { header: 'LAST-USED', cell: (t) => formatAge(t['last-used'], now) },
    { header: 'FROM', cell: lastUsedFrom },
    { header: 'COMMENT', cell: (t) => t.comment },
  ];
}

/** The secret is printed here and nowhere else: there is no way to show it again. */
function printSecret(ctx: CliContext, created: CreatedToken): void {
  ctx.printRecord(created, [
    ['full-tokenid', created['full-tokenid']],
    ['value', created.value],
  ]);
  if (ctx.format === 'text') {
    ctx.cli.io.stderr('Store the value now: it is shown only once.\n');
  }
}

function fieldsOf(options: TokenOptions): TokenFields {
  let enable: boolean | undefined;
  if (options.disabled || options.disable) enable = false;
  else if (options.enable !== undefined) enable = options.enable;
  const fields: TokenFields = {};
  if (enable !== undefined) fields.enable = enable;
  if (options.expire !== undefined) fields.expire = options.expire;
  if (options.privsep !== undefined) fields.privsep = options.privsep;
  if (options.comment !== undefined) fields.comment = options.comment;
  if (options.allowedIps !== undefined) fields.allowedIps = options.allowedIps;
  return fields;
}

/** One token as tokenctl shows it: the API's fields, whether it has a secret, its last use. */
function rowOf(
  userid: string,
  tokenid: string,
  info: TokenInfo,
  hasSecret: (tokenid: string) => boolean,
  record: LastUsedRecord,
): TokenRow {
  const full = joinTokenid(userid, tokenid);
  return withLastUsed(
    { 'full-tokenid': full, userid, tokenid, ...info, 'has-secret': hasSecret(full) },
    record.tokens.get(full),
  );
}

async function list(
  ctx: CliContext,
  userid: string | undefined,
  options: ListOptions,
): Promise<void> {
  const now = currentEpochSeconds();
  const record = await readLastUsed(ctx.settings.lastUsedPath);
  const perUser =
    userid === undefined
      ? (await ctx.read(listUsers, { full: true })).map((u) => [u.userid, u.tokens ?? []] as const)
      : [[userid, await ctx.read(listTokens, { userid })] as const];
  const hasSecret = await ctx.hasSecret();
  const rows: TokenRow[] = perUser.flatMap(([owner, tokens]) =>
    tokens.map(({ tokenid, ...info }) => rowOf(owner, tokenid, info, hasSecret, record)),
  );
  let shown = rows;
  if (options.unusedSince !== undefined) {
    const cutoff = now - Math.floor(options.unusedSince / 1000);
    shown = shown.filter((t) => (t['last-used'] ?? Number.NEGATIVE_INFINITY) < cutoff);
    if (record.since === null || record.since > cutoff) {
      const since =
        record.since === null ? 'not yet' : `only since ${formatExpire(record.since, 0)}`;
      ctx.warn(`uses are recorded ${since}; a token listed may have been used before`);
    }
  }
  if (options.expiringWithin !== undefined) {
    const window = Math.floor(options.expiringWithin / 1000);
    const soon = expiringWithin(await ctx.config(), now, window, ctx.reader().tokensExpiring);
    const ids = new Set(soon.filter((e) => e.kind === 'token').map((e) => e.id));
    shown = shown.filter((t) => ids.has(t['full-tokenid']));
  }
  ctx.printList(shown, tokenColumns(now));
}

const privsepOption = (extra = '') =>
  new Option(
    '--privsep <0|1>',
    `privilege separation: 1 limits the token to its own ACL entries${extra}`,
  ).argParser(flagArgument);
const expireOption = () =>
  new Option('--expire <date>', 'YYYY-MM-DD (00:00 UTC), epoch seconds, or 0 for never').argParser(
    expireArgument,
  );

/** `<tokenid> [name]`: USER@REALM!NAME, or pveum's USER@REALM NAME. */
function withTokenArguments(command: Command): Command {
  return command
    .argument('<tokenid>', "USER@REALM!NAME, or USER@REALM followed by NAME (pveum's order)")
    .argument('[name]', 'the token name, when <tokenid> is a user id');
}

/** The token the two arguments name; a usage error (exit 2) when they name none. */
function tokenOf(ctx: CliContext, first: string, name: string | undefined): Tokenid {
  try {
    return tokenidOf(first, name);
  } catch (error) {
    return ctx.usageError((error as Error).message);
  }
}

function printInfo(ctx: CliContext, id: Tokenid, info: TokenInfo): void {
  const now = currentEpochSeconds();
  ctx.printRecord(info, [
    ['full-tokenid', id.authid],
    ['enabled', yesNo(info.enable)],
    ['expire', formatExpire(info.expire, now)],
    ['privsep', yesNo(info.privsep)],
    ['comment', info.comment],
    ...policyLines(info, now),
  ]);
}

/** The fields Proxmox has not, where set: source restriction and rotation grace. */
function policyLines(info: TokenInfo, now: number): [string, string][] {
  const lines: [string, string][] = [];
  if (info['allowed-ips']) lines.push(['allowed-ips', info['allowed-ips']]);
  const until = info['grace-until'];
  if (until !== undefined) {
    lines.push([
      'grace-until',
      until > now ? formatExpire(until, now) : `ended (${formatExpire(until, now)})`,
    ]);
  }
  return lines;
}

/** `token ...` under `parent`: tokenctl's `token` and pveum's `user token`. */
export function registerTokenCommands(parent: Command, cli: Cli): void {
  const token = parent.command('token').description('API tokens');

  withTokenArguments(token.command('add').description('create a token and print its secret, once'))
    .addOption(privsepOption(' (default 1)'))
    .addOption(expireOption())
    .option('--comment <text>', 'free text')
    .option('--allowed-ips <list>', ALLOWED_IPS_HELP)
    .option('--disabled', 'create it disabled')
    .action(
      cli.action(async (ctx, first: string, name: string | undefined, options: TokenOptions) => {
        const id = tokenOf(ctx, first, name);
        const created = await ctx.write(createToken, {
          userid: id.userid,
          tokenName: id.tokenName,
          fields: fieldsOf(options),
        });
        printSecret(ctx, created);
      }),
    );

  token
    .command('list')
    .description("list every user's tokens, or one user's")
    .argument('[userid]', 'USER@REALM', useridArgument)
    .addOption(
      new Option(
        '--unused-since <duration>',
        'only tokens not used within it (e.g. 90d), never used ones included',
      ).argParser(durationArgument),
    )
    .addOption(
      new Option(
        '--expiring-within <duration>',
        "only tokens that stop working within it (e.g. 14d), by their own or their user's expiry",
      ).argParser(durationArgument),
    )
    .action(
      cli.action(async (ctx, userid: string | undefined, options: ListOptions) =>
        list(ctx, userid, options),
      ),
    );

  withTokenArguments(
    token
      .command('info')
      .description(
        'show one token: its fields, whether it has a secret, when and where from it was last used',
      ),
  ).action(
    cli.action(async (ctx, first: string, name: string | undefined) => {
      const id = tokenOf(ctx, first, name);
      const info = await ctx.read(readToken, { userid: id.userid, tokenName: id.tokenName });
      const shown = rowOf(
        id.userid,
        id.tokenName,
        info,
        await ctx.hasSecret(),
        await readLastUsed(ctx.settings.lastUsedPath),
      );
      const now = currentEpochSeconds();
      ctx.printRecord(shown, [
        ['full-tokenid', id.authid],
        ['enabled', yesNo(info.enable)],
        ['expire', formatExpire(info.expire, now)],
        ['privsep', yesNo(info.privsep)],
        ['secret', yesNo(shown['has-secret'])],
        ['last-used', formatAge(shown['last-used'], now)],
        ['last-used-source', shown['last-used-source'] ?? '-'],
        ['last-used-host', shown['last-used-host'] ?? '-'],
        ['comment', info.comment],
        ...policyLines(info, now),
      ]);
    }),
  );

  withTokenArguments(token.command('update').alias('modify').description('change a token'))
    .addOption(privsepOption())
    .addOption(expireOption())
    .option('--comment <text>', 'free text')
    .option('--allowed-ips <list>', ALLOWED_IPS_HELP)
    .addOption(
      new Option('--enable [0|1]', 'enable the token (--enable 0 disables it)')
        .argParser(flagArgument)
        .conflicts('disable'),
    )
    .addOption(new Option('--disable', 'disable the token'))
    .addOption(
      new Option(
        '--regenerate [0|1]',
        'also give it a new secret and print it, once; the old one stops working',
      ).argParser(flagArgument),
    )
    .option('--grace <duration>', `with --regenerate: ${GRACE_HELP}`, durationArgument)
    .action(
      cli.action(async (ctx, first: string, name: string | undefined, options: TokenOptions) => {
        const id = tokenOf(ctx, first, name);
        const changes = fieldsOf(options);
        const regenerate = options.regenerate === true;
        if (Object.keys(changes).length === 0 && !regenerate) ctx.usageError('nothing to change');
        if (options.grace !== undefined && !regenerate)
          ctx.usageError('--grace needs --regenerate');
        const answer = await ctx.write(updateToken, {
          userid: id.userid,
          tokenName: id.tokenName,
          changes,
          ...(regenerate ? { regenerate, ...graceOf(options) } : {}),
        });
        if (regenerate) printSecret(ctx, answer as CreatedToken);
        else printInfo(ctx, id, answer as TokenInfo);
      }),
    );

  withTokenArguments(
    token
      .command('permissions')
      .description("the privileges a token holds, per path (pveum's user token permissions)"),
  )
    .option('--path <path>', 'only this path', aclPathArgument)
    .action(
      cli.action(async (ctx, first: string, name: string | undefined, options: { path?: string }) =>
        showPermissions(ctx, tokenOf(ctx, first, name).authid, options.path),
      ),
    );

  withTokenArguments(
    token
      .command('rotate')
      .description(
        'give a token a new secret and print it, once; the old one stops working (with --grace, when that ends)',
      ),
  )
    .option('--grace <duration>', GRACE_HELP, durationArgument)
    .action(
      cli.action(async (ctx, first: string, name: string | undefined, options: TokenOptions) => {
        const id = tokenOf(ctx, first, name);
        printSecret(
          ctx,
          await ctx.write(rotateToken, {
            userid: id.userid,
            tokenName: id.tokenName,
            ...graceOf(options),
          }),
        );
      }),
    );

  token
    .command('revoke')
    .description(
      'remove every token of the given users and/or whose comment matches, with its secret, as one change',
    )
    .option(
      '--user <userid>',
      'tokens of this user (repeat for more)',
      (value: string, previous: string[] = []) => [...previous, useridArgument(value)],
    )
    .option('--comment <glob>', 'tokens whose comment matches (* any run, ? one character)')
    .option(
      '--created-before <date>',
      'tokens made before YYYY-MM-DD (00:00 UTC) or epoch seconds (the token database only)',
      expireArgument,
    )
    .option(
      '--last-used-before <date>',
      'tokens not used since YYYY-MM-DD (00:00 UTC) or epoch seconds (never used counts)',
      expireArgument,
    )
    .action(
      cli.action(
        async (
          ctx,
          options: {
            user?: string[];
            comment?: string;
            createdBefore?: number;
            lastUsedBefore?: number;
          },
        ) => {
          const { user, comment, createdBefore, lastUsedBefore } = options;
          if (
            user === undefined &&
            comment === undefined &&
            createdBefore === undefined &&
            lastUsedBefore === undefined
          ) {
            ctx.usageError(
              'give --user, --comment, --created-before or --last-used-before (all given must hold)',
            );
          }
          const answer = await ctx.write(revokeTokens, {
            ...(user ? { users: user } : {}),
            ...(comment !== undefined ? { comment } : {}),
            ...(createdBefore !== undefined ? { createdBefore } : {}),
            ...(lastUsedBefore !== undefined ? { lastUsedBefore } : {}),
          });
          ctx.printDone(answer, `revoked ${answer.revoked.length} token(s)`);
        },
      ),
    );

  token
    .command('revoke-leaked')
    .description(
      "revoke the tokens whose secrets are in FILE (a scanner's findings, any text; - for stdin)",
    )
    .argument('<file>', 'the text to find secrets in (tsk_..., as SECRET_PATTERN finds them)')
    .action(
      cli.action(async (ctx, file: string) => {
        const text = file === '-' ? await readStdin(process.stdin) : await readFile(file, 'utf8');
        const secrets = secretsIn(text);
        const stores = await ctx.writer();
        const shadow = ctx.reader().secrets;
        const leaked = await findLeakedTokens(await stores.readConfig(), secrets, (id, secret) =>
          shadow.verifyHashed(id, secret),
        );
        // One audited change per token, as a report over the API makes (actor host root here).
        for (const tokenid of leaked) {
          const [userid, tokenName] = splitTokenid(tokenid);
          await ctx.write(revokeLeakedToken, { userid, tokenName });
        }
        // The 53-character form made before references (or a bad checksum) names no token.
        const untraceable = secrets.filter((secret) => referenceOf(secret) === null).length;
        ctx.printDone(
          { secrets: secrets.length, untraceable, revoked: leaked },
          `${secrets.length} secret(s) found` +
            (untraceable > 0 ? ` (${untraceable} without a reference: not traceable)` : '') +
            `; revoked ${leaked.length} token(s)` +
            (leaked.length > 0 ? `: ${leaked.join(', ')}` : ''),
        );
      }),
    );

  withTokenArguments(
    token.command('remove').alias('delete').description('remove a token and its secret'),
  ).action(
    cli.action(async (ctx, first: string, name: string | undefined) => {
      const id = tokenOf(ctx, first, name);
      ctx.printDone(
        await ctx.write(deleteToken, { userid: id.userid, tokenName: id.tokenName }),
        `removed token ${id.authid}`,
      );
    }),
  );
}
