/**
 * The one module that turns values into POSIX shell text. Nothing else in the project builds
 * shell strings by concatenating values: pass every word through {@link quote}, or a whole
 * argument vector through {@link command}.
 *
 * Quoting is POSIX single-quote style: inside `'…'` every byte is literal, and a `'` is written
 * as `'\''` (close, escaped quote, reopen). This is correct for sh, dash, bash, ksh and zsh,
 * and needs no knowledge of locale or special characters.
 *
 * @packageDocumentation
 */

/** Characters that never need quoting (same set as Python's `shlex.quote`, minus `=`). */
const SAFE_WORD = /^[A-Za-z0-9_@%+:,./-]+$/;

/** Words that are special when unquoted in command position (shell reserved words). */
// An array, not a Set: this module runs inside the dynamic provider, whose serialized code cannot carry Sets.
const RESERVED: readonly string[] = Object.freeze([
  "!",
  "{",
  "}",
  "[[",
  "]]",
  "case",
  "do",
  "done",
  "elif",
  "else",
  "esac",
  "fi",
  "for",
  "function",
  "if",
  "in",
  "select",
  "then",
  "time",
  "until",
  "while",
]);

/**
 * Quote one argument so that the shell passes it through as exactly one word, byte for byte.
 *
 * - The empty string becomes `''`.
 * - A plain word (letters, digits and `_ @ % + : , . / -`, not a reserved word) is returned
 *   unchanged, for readable logs; `=` is always quoted so a word is never taken for an
 *   assignment.
 * - Anything else is wrapped in single quotes, with each `'` written as `'\''`. Newlines,
 *   `$`, backquotes, `;`, `|`, `*`, `~` and the like are all literal inside single quotes.
 *
 * @throws Error when `arg` is not a string or contains a NUL character, which no shell
 *   argument can carry.
 */
export function quote(arg: string): string {
  if (typeof arg !== "string") throw new Error(`quote: expected a string, got ${typeof arg}`);
  if (arg.includes("\0")) throw new Error("quote: a shell argument cannot contain a NUL character");
  if (arg === "") return "''";
  if (SAFE_WORD.test(arg) && !RESERVED.includes(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Join an argument vector into one command line: every element quoted with {@link quote},
 * separated by single spaces. `command(["sysctl", "-p", path])` runs `sysctl` with exactly
 * those arguments, whatever `path` contains.
 *
 * @throws Error when `argv` is empty or an element cannot be quoted.
 */
export function command(argv: readonly string[]): string {
  if (!Array.isArray(argv) || argv.length === 0) throw new Error("command: argv must contain at least the program name");
  return argv.map(quote).join(" ");
}

/** Operators {@link chain} can place between commands. */
export type ChainOperator = "&&" | "||" | ";" | "|";

/**
 * Join several argument vectors into one command line with a fixed operator, e.g.
 * `chain([["systemctl", "restart", "nginx"], ["systemctl", "is-active", "nginx"]], "&&")`.
 *
 * @throws Error when `commands` is empty, an argv is empty, or the operator is unknown.
 */
export function chain(commands: readonly (readonly string[])[], operator: ChainOperator): string {
  if (!["&&", "||", ";", "|"].includes(operator)) throw new Error(`chain: unknown operator ${JSON.stringify(operator)}`);
  if (commands.length === 0) throw new Error("chain: at least one command is required");
  return commands.map(command).join(` ${operator} `);
}
