/**
 * The web console, in the browser: a client of the same API as any other,
 * signed in with an API token and holding no privilege of its own. The secret
 * lives in this module's memory only (never a cookie, storage or a URL), so a
 * reload signs out; a 401 on any call (the token revoked or expired) signs out
 * too. Every name and comment is set as text (textContent), never as markup.
 * No framework: the DOM's own elements (forms, tables, <dialog>) give labels,
 * focus and keyboard handling.
 */

// GET /cluster/token-shadow's answer, the server's own type (erased: nothing imported at run time).
import type { ClusterView } from '../cluster/admin.js';

const API = '/api2/json';

interface TokenRow {
  userid: string;
  tokenid: string;
  enable: number;
  expire: number;
  privsep: number;
  comment: string;
  'last-used'?: number;
  'allowed-ips'?: string;
  'grace-until'?: number;
  /** The client's address of the last use. */
  'last-used-source'?: string;
  /** The host that recorded it (multi-host mode). */
  'last-used-host'?: string;
}

interface UserRow {
  userid: string;
  enable: number;
  expire: number;
  tokens?: Omit<TokenRow, 'userid'>[];
}

class SignedOut extends Error {}

let credential: string | null = null;
let signedInAs = '';

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`#${id} is missing`);
  return element;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined) element.setAttribute(name, value);
  }
  for (const child of children) element.append(child); // strings become text nodes
  return element;
}

/** Says something to the user (an aria-live region, so screen readers hear it). */
function say(message: string, kind: 'info' | 'error' = 'info'): void {
  const status = $('status');
  status.textContent = message;
  status.className = kind;
}

async function api<T>(method: string, path: string, params?: Record<string, string>): Promise<T> {
  if (credential === null) throw new SignedOut();
  const query = params && (method === 'GET' || method === 'DELETE');
  const url = `${API}${path}${query ? `?${new URLSearchParams(params)}` : ''}`;
  const response = await fetch(url, {
    method,
    headers: {
      authorization: credential,
      ...(params && !query ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
    },
    ...(params && !query ? { body: new URLSearchParams(params).toString() } : {}),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (response.status === 401) {
    signOut('Signed out: the token was refused (revoked, disabled or expired).');
    throw new SignedOut();
  }
  const body = (await response.json().catch(() => ({}))) as {
    data?: T;
    message?: string;
    errors?: Record<string, string>;
  };
  if (!response.ok) {
    const detail = body.errors ? Object.entries(body.errors).map(([k, v]) => `${k}: ${v}`) : [];
    throw new Error([body.message ?? `HTTP ${response.status}`, ...detail].join('; '));
  }
  return body.data as T;
}

function signOut(message: string): void {
  credential = null;
  signedInAs = '';
  $('app').hidden = true;
  $('signin').hidden = false;
  (document.getElementById('secret') as HTMLInputElement).value = '';
  say(message);
}

function date(seconds: number | undefined, never: string): string {
  if (!seconds) return never;
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

/** Where the last use came from: `address`, `address on host`, `on host`, or '' when not known. */
function where(row: TokenRow): string {
  const source = row['last-used-source'] ?? '';
  const host = row['last-used-host'];
  if (host === undefined) return source;
  return source === '' ? `on ${host}` : `${source} on ${host}`;
}

/** The tokens the caller may see, with last use (one call per user, as PVE's API has it). */
async function loadTokens(): Promise<TokenRow[]> {
  const users = await api<UserRow[]>('GET', '/access/users', { full: '1' });
  const rows: TokenRow[] = [];
  for (const user of users) {
    if (!user.tokens || user.tokens.length === 0) continue;
    const tokens = await api<Omit<TokenRow, 'userid'>[]>(
      'GET',
      `/access/users/${encodeURIComponent(user.userid)}/token`,
    );
    for (const token of tokens) rows.push({ userid: user.userid, ...token });
  }
  return rows;
}

let tokens: TokenRow[] = [];

function fullId(row: TokenRow): string {
  return `${row.userid}!${row.tokenid}`;
}

/** The rows the filter keeps: text in the id or comment, expiring within / unused for N days. */
function filtered(): TokenRow[] {
  const text = (document.getElementById('filter-text') as HTMLInputElement).value.trim();
  const expiring = Number((document.getElementById('filter-expiring') as HTMLInputElement).value);
  const unused = Number((document.getElementById('filter-unused') as HTMLInputElement).value);
  const now = Date.now() / 1000;
  return tokens.filter((row) => {
    if (text && !fullId(row).includes(text) && !row.comment.includes(text)) return false;
    if (expiring > 0 && !(row.expire > now && row.expire <= now + expiring * 86400)) return false;
    if (unused > 0 && (row['last-used'] ?? 0) > now - unused * 86400) return false;
    return true;
  });
}

function tokenPath(row: TokenRow): string {
  return `/access/users/${encodeURIComponent(row.userid)}/token/${encodeURIComponent(row.tokenid)}`;
}

/** What Proxmox's tokens have not, under the id: where it may be used from, an open grace. */
function policyNotes(row: TokenRow): HTMLElement[] {
  const notes: HTMLElement[] = [];
  if (row['allowed-ips']) {
    notes.push(el('small', { class: 'allowed' }, `from ${row['allowed-ips']}`));
  }
  const until = row['grace-until'];
  if (until !== undefined && until * 1000 > Date.now()) {
    notes.push(el('small', { class: 'grace' }, `previous secret until ${date(until, '')}`));
  }
  return notes;
}

function renderTokens(): void {
  const body = $('tokens-body');
  const rows = filtered();
  body.replaceChildren(
    ...rows.map((row) => {
      const actions = el('td', { class: 'actions' });
      const button = (label: string, name: string, run: () => void) => {
        const b = el('button', { type: 'button', 'aria-label': `${label} ${fullId(row)}` }, label);
        b.dataset.action = name;
        b.addEventListener('click', run);
        actions.append(b);
      };
      button('Edit', 'edit', () => openEdit(row));
      button('Rotate', 'rotate', () => rotate(row));
      button('Permissions', 'permissions', () => void showPermissions(row));
      button('Revoke', 'revoke', () => void revoke([row]));
      const tr = el(
        'tr',
        {},
        el('td', { class: 'id' }, fullId(row), ...policyNotes(row)),
        el('td', {}, row.enable ? 'yes' : 'no'),
        el('td', {}, date(row.expire, 'never')),
        el('td', {}, row.privsep ? 'yes' : 'no'),
        el('td', {}, date(row['last-used'], 'never')),
        el('td', { class: 'where' }, where(row)),
        el('td', { class: 'comment' }, row.comment),
        actions,
      );
      tr.dataset.token = fullId(row);
      return tr;
    }),
  );
  $('token-count').textContent = `${rows.length} of ${tokens.length} tokens`;
}

/** The cluster section: every host's ack, lease and fence (needs Sys.Audit on /). */
async function loadCluster(): Promise<void> {
  const summary = $('cluster-summary');
  const table = $('cluster-hosts');
  let view: ClusterView;
  try {
    view = await api<ClusterView>('GET', '/cluster/token-shadow');
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    table.hidden = true;
    summary.textContent = `Not shown: ${(error as Error).message}`;
    return;
  }
  if (view.mode === 'single-host') {
    table.hidden = true;
    summary.textContent = 'Single-host mode: no cluster.';
    return;
  }
  const fence =
    view.local.fence === 'fenced'
      ? 'fenced: it refuses every token'
      : view.local.fenceRemainingMs === null
        ? 'no fence yet'
        : `open, ${(view.local.fenceRemainingMs / 1000).toFixed(1)} s of trust left`;
  summary.textContent = `Cluster ${view.cluster}, data revision ${view.dataRevision}; this host ${view.host} is ${fence}.`;
  $('cluster-body').replaceChildren(
    ...view.hosts.map((h) => {
      const tr = el(
        'tr',
        {},
        el('td', { class: 'id' }, h.host === view.host ? `${h.host} (this host)` : h.host),
        el('td', {}, h.live ? 'yes' : 'no'),
        el('td', {}, h.ackedRevision === null ? '-' : String(h.ackedRevision)),
        el('td', {}, h.behind === null ? '-' : String(h.behind)),
        el('td', {}, `${(h.leaseRemainingMs / 1000).toFixed(0)} s`),
        el('td', {}, h.fenced ? 'yes' : 'no'),
      );
      tr.dataset.host = h.host;
      return tr;
    }),
  );
  table.hidden = false;
}

async function refresh(): Promise<void> {
  tokens = await loadTokens();
  renderTokens();
  await loadCluster();
  const users = [...new Set((await api<UserRow[]>('GET', '/access/users')).map((u) => u.userid))];
  $('create-user').replaceChildren(...users.map((u) => el('option', { value: u }, u)));
}

/** The new secret, once: with a copy button and the warning that it cannot be shown again. */
function showSecret(tokenid: string, value: string): void {
  $('secret-id').textContent = tokenid;
  ($('secret-value') as HTMLInputElement).value = value;
  $('copied').textContent = '';
  ($('secret-dialog') as HTMLDialogElement).showModal();
}

/** The secret leaves the page as soon as its dialog closes (button or Escape). */
function forgetSecret(): void {
  ($('secret-value') as HTMLInputElement).value = '';
}

async function guarded(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (!(error instanceof SignedOut)) say((error as Error).message, 'error');
  }
}

async function createToken(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  await guarded(async () => {
    const form = event.target as HTMLFormElement;
    const data = new FormData(form);
    const userid = String(data.get('userid'));
    const name = String(data.get('name'));
    const expire = String(data.get('expire') ?? '');
    const params: Record<string, string> = {
      comment: String(data.get('comment') ?? ''),
      privsep: data.get('privsep') ? '1' : '0',
      ...(expire ? { expire: String(Date.parse(`${expire}T00:00:00Z`) / 1000) } : {}),
      ...(data.get('allowed-ips') ? { 'allowed-ips': String(data.get('allowed-ips')) } : {}),
    };
    const created = await api<{ 'full-tokenid': string; value: string }>(
      'POST',
      `/access/users/${encodeURIComponent(userid)}/token/${encodeURIComponent(name)}`,
      params,
    );
    form.reset();
    await refresh();
    say(`Created ${created['full-tokenid']}.`);
    showSecret(created['full-tokenid'], created.value);
  });
}

/** Asks how long the old secret may overlap the new one (rotate-dialog), then rotates. */
function rotate(row: TokenRow): void {
  const form = $('rotate-form') as HTMLFormElement;
  form.reset();
  form.dataset.token = fullId(row);
  $('rotate-id').textContent = fullId(row);
  ($('rotate-dialog') as HTMLDialogElement).showModal();
}

async function confirmRotate(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const row = tokens.find((t) => fullId(t) === form.dataset.token);
  if (!row) return;
  const grace = String(new FormData(form).get('grace') ?? '0');
  ($('rotate-dialog') as HTMLDialogElement).close();
  await guarded(async () => {
    const created = await api<{ value: string; info: TokenRow }>('PUT', tokenPath(row), {
      regenerate: '1',
      ...(grace === '0' ? {} : { grace }),
    });
    const until = created.info['grace-until'];
    await refresh();
    say(
      until === undefined
        ? `Rotated ${fullId(row)}: the old secret stopped working.`
        : `Rotated ${fullId(row)}: the old secret works until ${date(until, '')}.`,
    );
    showSecret(fullId(row), created.value);
  });
}

/** Revokes `rows` (one, or what the filter keeps), after a confirmation that says how many. */
async function revoke(rows: TokenRow[]): Promise<void> {
  if (rows.length === 0) return say('No token matches the filter.');
  const what = rows.length === 1 ? (rows[0] as TokenRow).tokenid : `${rows.length} tokens`;
  const names = rows.length === 1 ? fullId(rows[0] as TokenRow) : `${rows.length} tokens`;
  if (
    !confirm(`Revoke ${names}? Every process refuses ${rows.length === 1 ? 'it' : 'them'} at once.`)
  ) {
    return;
  }
  await guarded(async () => {
    let done = 0;
    for (const row of rows) {
      // The console's own token last: revoking it signs the console out.
      if (fullId(row) === signedInAs) continue;
      await api('DELETE', tokenPath(row));
      done++;
    }
    const self = rows.find((row) => fullId(row) === signedInAs);
    if (self) await api('DELETE', tokenPath(self));
    await refresh();
    say(`Revoked ${done === rows.length ? what : `${done} of ${rows.length}`}.`);
  });
}

function openEdit(row: TokenRow): void {
  const form = $('edit-form') as HTMLFormElement;
  form.dataset.token = fullId(row);
  $('edit-id').textContent = fullId(row);
  (form.elements.namedItem('comment') as HTMLInputElement).value = row.comment;
  (form.elements.namedItem('expire') as HTMLInputElement).value = row.expire
    ? new Date(row.expire * 1000).toISOString().slice(0, 10)
    : '';
  (form.elements.namedItem('enable') as HTMLInputElement).checked = row.enable === 1;
  (form.elements.namedItem('allowed-ips') as HTMLInputElement).value = row['allowed-ips'] ?? '';
  ($('edit-dialog') as HTMLDialogElement).showModal();
}

async function saveEdit(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const row = tokens.find((t) => fullId(t) === form.dataset.token);
  if (!row) return;
  await guarded(async () => {
    const data = new FormData(form);
    const expire = String(data.get('expire') ?? '');
    await api('PUT', tokenPath(row), {
      comment: String(data.get('comment') ?? ''),
      'allowed-ips': String(data.get('allowed-ips') ?? ''),
      enable: data.get('enable') ? '1' : '0',
      expire: expire ? String(Date.parse(`${expire}T00:00:00Z`) / 1000) : '0',
    });
    ($('edit-dialog') as HTMLDialogElement).close();
    await refresh();
    say(`Saved ${fullId(row)}.`);
  });
}

async function showPermissions(row: TokenRow): Promise<void> {
  await guarded(async () => {
    const tree = await api<Record<string, Record<string, number>>>('GET', '/access/permissions', {
      userid: fullId(row),
    });
    $('permissions-id').textContent = fullId(row);
    const entries = Object.entries(tree).sort(([a], [b]) => a.localeCompare(b));
    $('permissions-body').replaceChildren(
      ...entries.map(([path, privileges]) =>
        el(
          'tr',
          {},
          el('td', {}, path),
          el(
            'td',
            {},
            Object.entries(privileges)
              .map(([name, propagate]) => (propagate ? `${name} (*)` : name))
              .sort()
              .join(', '),
          ),
        ),
      ),
    );
    if (entries.length === 0) {
      $('permissions-body').replaceChildren(el('tr', {}, el('td', { colspan: '2' }, 'none')));
    }
    ($('permissions-dialog') as HTMLDialogElement).showModal();
  });
}

async function signIn(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const data = new FormData(form);
  const tokenid = String(data.get('tokenid')).trim();
  const secret = String(data.get('secret'));
  credential = `PVEAPIToken=${tokenid}=${secret}`;
  try {
    await api('GET', '/access/permissions');
  } catch (error) {
    credential = null;
    if (!(error instanceof SignedOut)) say((error as Error).message, 'error');
    else say('Sign-in refused: check the token id and secret.', 'error');
    return;
  }
  (form.elements.namedItem('secret') as HTMLInputElement).value = '';
  signedInAs = tokenid;
  $('whoami').textContent = tokenid;
  $('signin').hidden = true;
  $('app').hidden = false;
  say(`Signed in as ${tokenid}.`);
  await guarded(refresh);
}

function wire(): void {
  $('signin-form').addEventListener('submit', (e) => void signIn(e as SubmitEvent));
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  $('create-form').addEventListener('submit', (e) => void createToken(e as SubmitEvent));
  $('edit-form').addEventListener('submit', (e) => void saveEdit(e as SubmitEvent));
  $('rotate-form').addEventListener('submit', (e) => void confirmRotate(e as SubmitEvent));
  for (const id of ['filter-text', 'filter-expiring', 'filter-unused']) {
    $(id).addEventListener('input', renderTokens);
  }
  $('bulk-revoke').addEventListener('click', () => void revoke(filtered()));
  $('reload').addEventListener('click', () => void guarded(refresh));
  $('copy').addEventListener('click', () => {
    const value = ($('secret-value') as HTMLInputElement).value;
    navigator.clipboard.writeText(value).then(
      () => {
        $('copied').textContent = 'Copied.';
      },
      () => {
        ($('secret-value') as HTMLInputElement).select();
        $('copied').textContent = 'Select and copy it by hand.';
      },
    );
  });
  $('secret-dialog').addEventListener('close', forgetSecret);
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.querySelector('[data-close]')?.addEventListener('click', () => {
      if (dialog.id === 'secret-dialog') forgetSecret();
      dialog.close();
    });
  }
}

wire();
