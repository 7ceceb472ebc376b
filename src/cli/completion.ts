/**
 * `tokenctl completion bash`: a bash completion script made from the command
 * tree itself, so it never lags behind a new command or option. It completes
 * commands, subcommands and options (option values and ids are left to bash's
 * default completion).
 */
import type { Command } from 'commander';

/** Every command path ("tokenctl token add") with the words that may follow it. */
export function completionWords(program: Command): Map<string, string[]> {
  const words = new Map<string, string[]>();
  const visit = (command: Command, path: string[], globals: string[]) => {
    const options = command.options
      .filter((o) => !o.hidden)
      .flatMap((o) => (o.long ? [o.long] : []));
    const below = command.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
    const names = below.flatMap((c) => [c.name(), ...c.aliases()]);
    words.set(path.join(' '), [...names, ...options, ...globals, '--help']);
    const inherited = path.length === 1 ? options.filter((o) => o !== '--version') : globals;
    for (const child of below) {
      for (const name of [child.name(), ...child.aliases()]) {
        visit(child, [...path, name], inherited);
      }
    }
  };
  // Keyed from the program's name: bash's associative arrays refuse an empty key.
  visit(program, [program.name()], []);
  return words;
}

/** A word as a bash single-quoted string. */
function sq(word: string): string {
  return `'${word.replace(/'/g, "'\\''")}'`;
}

export function bashCompletion(program: Command): string {
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const entries = [...completionWords(program)]
    .map(([path, list]) => `  [${sq(path)}]=${sq([...new Set(list)].join(' '))}`)
    .join('\n');
  return `# bash completion for ${name}; load with: source <(${name} completion bash)
declare -gA ${fn}_words=(
${entries}
)
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path=${sq(name)} word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    [[ "$word" == -* ]] && continue
    local next="$path $word"
    [[ -n "\${${fn}_words[$next]+set}" ]] && path="$next"
  done
  COMPREPLY=($(compgen -W "\${${fn}_words[$path]}" -- "$cur"))
}
complete -o default -F ${fn} ${name}
`;
}
