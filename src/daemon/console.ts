/**
 * The web console, served by the API daemon at `/` (the API stays under
 * /api2/json): one page, its script (src/console/app.ts, compiled with the
 * rest) and its style sheet, all from this daemon, none from elsewhere, so it
 * works offline. It is a client of the API like any other, signed in with a
 * token: it has no privilege of its own. A strict Content-Security-Policy
 * allows only this origin's script and style (no inline script, no eval, no
 * frames), and every answer says not to sniff, frame or send a referrer.
 * Turned off with --no-console (or `"console": false`): then `/` is a 404.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>token-shadow console</title>
<link rel="stylesheet" href="/console/app.css">
<script type="module" src="/console/app.js"></script>
</head>
<body>
<header><h1>token-shadow</h1><p id="status" role="status" aria-live="polite"></p></header>

<main>
<section id="signin" aria-labelledby="signin-title">
  <h2 id="signin-title">Sign in with an API token</h2>
  <form id="signin-form" autocomplete="off">
    <label for="tokenid">Token id</label>
    <input id="tokenid" name="tokenid" required placeholder="user@pve!name" spellcheck="false">
    <label for="secret">Secret</label>
    <input id="secret" name="secret" type="password" required spellcheck="false">
    <button type="submit">Sign in</button>
  </form>
  <p class="note">The secret stays in this tab's memory only: a reload signs you out.</p>
</section>

<section id="app" hidden>
  <nav aria-label="Session"><span>Signed in as <strong id="whoami"></strong></span>
    <button type="button" id="reload">Reload</button>
    <button type="button" id="signout">Sign out</button></nav>

  <section aria-labelledby="tokens-title">
    <h2 id="tokens-title">Tokens</h2>
    <form id="filters" role="search" aria-label="Filter tokens">
      <label for="filter-text">Id or comment contains</label>
      <input id="filter-text" name="text" spellcheck="false">
      <label for="filter-expiring">Expiring within (days)</label>
      <input id="filter-expiring" name="expiring" type="number" min="0" inputmode="numeric">
      <label for="filter-unused">Unused for (days)</label>
      <input id="filter-unused" name="unused" type="number" min="0" inputmode="numeric">
      <button type="button" id="bulk-revoke">Revoke all shown</button>
    </form>
    <p id="token-count" aria-live="polite"></p>
    <table id="tokens">
      <thead><tr><th scope="col">Token</th><th scope="col">Enabled</th><th scope="col">Expires</th>
        <th scope="col">Privilege separation</th><th scope="col">Last used</th>
        <th scope="col">Where</th><th scope="col">Comment</th><th scope="col">Actions</th></tr></thead>
      <tbody id="tokens-body"></tbody>
    </table>
  </section>

  <section aria-labelledby="create-title">
    <h2 id="create-title">New token</h2>
    <form id="create-form">
      <label for="create-user">User</label>
      <select id="create-user" name="userid" required></select>
      <label for="create-name">Name</label>
      <input id="create-name" name="name" required pattern="[A-Za-z0-9_][A-Za-z0-9._\\-]*" spellcheck="false">
      <label for="create-comment">Comment</label>
      <input id="create-comment" name="comment">
      <label for="create-expire">Expires (UTC day, empty: never)</label>
      <input id="create-expire" name="expire" type="date">
      <label for="create-allowed">Allowed from (addresses, CIDRs; empty: anywhere)</label>
      <input id="create-allowed" name="allowed-ips" spellcheck="false" placeholder="10.0.0.0/8, 2001:db8::/32">
      <label><input type="checkbox" name="privsep" checked> Privilege separation</label>
      <button type="submit">Create</button>
    </form>
  </section>

  <section id="cluster" aria-labelledby="cluster-title">
    <h2 id="cluster-title">Cluster</h2>
    <p id="cluster-summary" aria-live="polite"></p>
    <table id="cluster-hosts" hidden>
      <thead><tr><th scope="col">Host</th><th scope="col">Live</th><th scope="col">Acked revision</th>
        <th scope="col">Behind</th><th scope="col">Lease left</th><th scope="col">Fenced</th></tr></thead>
      <tbody id="cluster-body"></tbody>
    </table>
  </section>
</section>
</main>

<dialog id="secret-dialog" aria-labelledby="secret-title">
  <h2 id="secret-title">Secret of <span id="secret-id"></span></h2>
  <p class="warning">Store it now: it is shown once and cannot be shown again.</p>
  <label for="secret-value">Secret</label>
  <input id="secret-value" readonly spellcheck="false">
  <button type="button" id="copy">Copy</button> <span id="copied" aria-live="polite"></span>
  <button type="button" data-close>Done</button>
</dialog>

<dialog id="edit-dialog" aria-labelledby="edit-title">
  <h2 id="edit-title">Edit <span id="edit-id"></span></h2>
  <form id="edit-form">
    <label for="edit-comment">Comment</label>
    <input id="edit-comment" name="comment">
    <label for="edit-expire">Expires (UTC day, empty: never)</label>
    <input id="edit-expire" name="expire" type="date">
    <label for="edit-allowed">Allowed from (addresses, CIDRs; empty: anywhere)</label>
    <input id="edit-allowed" name="allowed-ips" spellcheck="false">
    <label><input type="checkbox" name="enable"> Enabled</label>
    <button type="submit">Save</button>
    <button type="button" data-close>Cancel</button>
  </form>
</dialog>

<dialog id="rotate-dialog" aria-labelledby="rotate-title">
  <h2 id="rotate-title">Rotate <span id="rotate-id"></span></h2>
  <form id="rotate-form">
    <label for="rotate-grace">The old secret keeps working for</label>
    <select id="rotate-grace" name="grace">
      <option value="0">no time: it stops at once</option>
      <option value="3600">1 hour</option>
      <option value="86400">1 day</option>
      <option value="604800">7 days</option>
    </select>
    <button type="submit">Rotate</button>
    <button type="button" data-close>Cancel</button>
  </form>
</dialog>

<dialog id="permissions-dialog" aria-labelledby="permissions-title">
  <h2 id="permissions-title">Permissions of <span id="permissions-id"></span></h2>
  <table><thead><tr><th scope="col">Path</th><th scope="col">Privileges ((*): propagates)</th></tr></thead>
  <tbody id="permissions-body"></tbody></table>
  <button type="button" data-close>Close</button>
</dialog>
</body>
</html>
`;

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f6f7f9; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem; }
header { display: flex; align-items: baseline; gap: 1rem; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1.1rem; }
#status.error { color: #a4000f; }
form { display: flex; flex-wrap: wrap; gap: .4rem .8rem; align-items: center; }
label { font-size: .9rem; }
input, select, button { font: inherit; padding: .25rem .4rem; }
button { cursor: pointer; }
button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid #3b6fd8; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #d0d4da; padding: .3rem .4rem; text-align: left; vertical-align: top; }
td.id, #secret-value { font-family: ui-monospace, monospace; }
#secret-value { width: 100%; max-width: 40rem; box-sizing: border-box; }
td.comment { white-space: pre-wrap; word-break: break-word; }
td.id small { display: block; color: #555; }
td.actions button { margin: 0 .2rem .2rem 0; }
.warning { color: #7a4b00; font-weight: bold; }
.note { color: #555; font-size: .9rem; }
nav { display: flex; gap: .8rem; align-items: center; }
dialog { max-width: 48rem; }
`;

/** Registers the console's three routes on `app` (no authentication: the page has no data). */
export async function registerConsole(app: FastifyInstance): Promise<void> {
  const script = await readFile(new URL('../console/app.js', import.meta.url), 'utf8');
  const send = (type: string, body: string) => async (_: unknown, reply: FastifyReply) => {
    reply.headers(HEADERS);
    reply.type(type);
    return body;
  };
  app.get('/', send('text/html; charset=utf-8', PAGE));
  app.get('/console/app.js', send('text/javascript; charset=utf-8', script));
  app.get('/console/app.css', send('text/css; charset=utf-8', STYLE));
}
