/**
 * Whether a file may be trusted with what it holds. Whoever can write
 * token.shadow or user.cfg can grant themselves access; whoever can write the
 * generation page can keep stale cache entries alive. So such a file must be
 * owned by root or by this process's user, and writable by nobody else (the
 * page alone may be group-writable: the API daemon's group bumps it).
 */
export function untrustworthy(
  st: { mode: number | bigint; uid: number | bigint },
  options: { groupMayWrite: boolean },
): string | null {
  const mode = Number(st.mode) & 0o7777;
  const uid = Number(st.uid);
  const forbidden = options.groupMayWrite ? 0o002 : 0o022;
  if (mode & forbidden) {
    return `writable by ${mode & 0o002 ? 'others' : 'its group'} (mode ${mode.toString(8).padStart(4, '0')})`;
  }
  const me = process.geteuid?.() ?? 0;
  if (uid !== 0 && uid !== me) return `owned by uid ${uid}, neither root nor this process`;
  return null;
}
