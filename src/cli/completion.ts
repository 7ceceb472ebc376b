/**
 * `tokenctl completion bash`: a bash completion script made from the command
 * tree itself, so it never lags behind a new command or option. It completes
 * commands, subcommands and options, the values of options that take one of a
 * few (`--output <TAB>`, `--privsep <TAB>`), and user, token, group, role and
 * pool ids where a command takes one, asking `tokenctl complete-ids`, which
 * reads the ids from user.cfg (so only where the user may read it: root).
 */
import type { Command, Option } from 'commander';

/** The id kinds a command's first argument can name, by the argument's name. */
export const ID_KINDS = ['userid', 'tokenid', 'groupid', 'roleid', 'poolid'] as const;
export type IdKind = (typeof ID_KINDS)[number];

/** What bash completes, per command path ("tokenctl token add"). */
export interface CompletionTable {
  /** The words that may follow the path: subcommands, options, --help. */
  words: Map<string, string[]>;
  /** The values an option takes, by option name (the same everywhere in the tree). */
  values: Map<string, string[]>;
  /** The kind of id the path's first argument is. */
  ids: Map<string, IdKind>;
}

function hidden(command: Command): boolean {
  return (command as unknown as { _hidden?: boolean })._hidden === true;
}

/** The values an option's argument may take: its choices, or 0/1 for a PVE boolean. */
function valuesOf(option: Option): string[] | undefined {
  if (option.argChoices) return option.argChoices;
  if (/[<[]0\|1[>\]]/.test(option.flags)) return ['0', '1'];
  return undefined;
}

export function completionTable(program: Command): CompletionTable {
  const table: CompletionTable = { words: new Map(), values: new Map(), ids: new Map() };
  const visit = (command: Command, path: string[], globals: string[]) => {
    const visible = command.options.filter((o) => !o.hidden);
    const options = visible.flatMap((o) => (o.long ? [o.long] : []));
    for (const option of visible) {
      const values = valuesOf(option);
      if (option.long && values) table.values.set(option.long, values);
    }
    const below = command.commands.filter((c) => !hidden(c));
    const names = below.flatMap((c) => [c.name(), ...c.aliases()]);
    const key = path.join(' ');
    table.words.set(key, [...names, ...options, ...globals, '--help']);
    const first = command.registeredArguments[0]?.name();
    if (first && (ID_KINDS as readonly string[]).includes(first)) {
      table.ids.set(key, first as IdKind);
    }
    const inherited = path.length === 1 ? options.filter((o) => o !== '--version') : globals;
    for (const child of below) {
      for (const name of [child.name(), ...child.aliases()]) {
        visit(child, [...path, name], inherited);
      }
    }
  };
  // Keyed from the program's name: bash's associative arrays refuse an empty key.
  visit(program, [program.name()], []);
  return table;
}

/** A word as a bash single-quoted string. */
function sq(word: string): string {
  return `'${word.replace(/'/g, "'\\''")}'`;
}

function bashArray(name: string, entries: Iterable<[string, string | string[]]>): string {
  const lines = [...entries].map(([key, value]) => {
    const words = Array.isArray(value) ? [...new Set(value)].join(' ') : value;
    return `  [${sq(key)}]=${sq(words)}`;
  });
  return `declare -gA ${name}=(\n${lines.join('\n')}\n)`;
}

export function bashCompletion(program: Command): string {
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const table = completionTable(program);
  return `# bash completion for ${name}; load with: source <(${name} completion bash)
${bashArray(`${fn}_words`, table.words)}
${bashArray(`${fn}_values`, table.values)}
${bashArray(`${fn}_ids`, table.ids)}
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path=${sq(name)}
  local word i globals=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      --config-dir|--runtime-dir) globals+=("$word" "\${COMP_WORDS[i+1]}") ;;
    esac
    [[ "$word" == -* ]] && continue
    local next="$path $word"
    [[ -n "\${${fn}_words[$next]+set}" ]] && path="$next"
  done
  if [[ -n "\${${fn}_values[$prev]+set}" ]]; then
    COMPREPLY=($(compgen -W "\${${fn}_values[$prev]}" -- "$cur"))
    return
  fi
  local candidates="\${${fn}_words[$path]}"
  if [[ "$cur" != -* && -n "\${${fn}_ids[$path]+set}" ]]; then
    candidates="$candidates $(${name} "\${globals[@]}" complete-ids "\${${fn}_ids[$path]}" 2>/dev/null)"
  fi
  COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
}
complete -o default -F ${fn} ${name}
`;
}
