/**
 * Unified diffs of managed files (pure): what `preview` shows an operator for a file that differs
 * between the host and the profile. Line-based, longest common subsequence, three lines of context,
 * capped in length.
 */

/** Options of {@link unifiedDiff}. */
export interface DiffOptions {
  /** Label of the old side. Default `host`. */
  readonly from?: string;
  /** Label of the new side. Default `profile`. */
  readonly to?: string;
  /** Unchanged lines shown around each change. Default 3. */
  readonly context?: number;
  /** Most lines of output; longer diffs end with a line saying how many were left out. Default 80. */
  readonly maxLines?: number;
}

type Op = { kind: " " | "-" | "+"; text: string; a: number; b: number };

/** Line edits from `a` to `b` (LCS; files here are small, at most a few hundred lines). */
function edits(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j] = LCS length of a[i..] and b[j..]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push({ kind: " ", text: a[i]!, a: i++, b: j++ });
    } else if (j < m && (i === n || lcs[i]![j + 1]! > lcs[i + 1]![j]!)) {
      ops.push({ kind: "+", text: b[j]!, a: i, b: j++ });
    } else {
      ops.push({ kind: "-", text: a[i]!, a: i++, b: j });
    }
  }
  return ops;
}

function lines(text: string): string[] {
  const l = text.split("\n");
  if (l.length > 0 && l[l.length - 1] === "") l.pop();
  return l;
}

/**
 * The unified diff from `before` to `after` (`""` when equal), with `---`/`+++` headers and
 * `@@ -a,n +b,m @@` hunks like `diff -u`.
 */
export function unifiedDiff(before: string, after: string, options: DiffOptions = {}): string {
  if (before === after) return "";
  const context = options.context ?? 3;
  const maxLines = options.maxLines ?? 80;
  const a = lines(before);
  const b = lines(after);
  if (a.length * b.length > 4_000_000)
    return `--- ${options.from ?? "host"}\n+++ ${options.to ?? "profile"}\n(files too large to compare here: ${a.length} and ${b.length} lines)\n`;
  const ops = edits(a, b);
  const changed = ops.map((o, k) => (o.kind !== " " ? k : -1)).filter((k) => k >= 0);
  const out: string[] = [`--- ${options.from ?? "host"}`, `+++ ${options.to ?? "profile"}`];
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, changed[k]! - context);
    let end = Math.min(ops.length - 1, changed[k]! + context);
    while (k + 1 < changed.length && changed[k + 1]! - context <= end + 1) {
      k++;
      end = Math.min(ops.length - 1, changed[k]! + context);
    }
    const hunk = ops.slice(start, end + 1);
    const aLen = hunk.filter((o) => o.kind !== "+").length;
    const bLen = hunk.filter((o) => o.kind !== "-").length;
    const aStart = aLen === 0 ? hunk[0]!.a : hunk[0]!.a + 1;
    const bStart = bLen === 0 ? hunk[0]!.b : hunk[0]!.b + 1;
    out.push(`@@ -${aStart},${aLen} +${bStart},${bLen} @@`, ...hunk.map((o) => o.kind + o.text));
    k++;
  }
  if (out.length > maxLines) {
    const cut = out.length - maxLines;
    return [...out.slice(0, maxLines), `… ${cut} more line(s)`].join("\n") + "\n";
  }
  return out.join("\n") + "\n";
}
