/** Unified diffs of managed files, checked against GNU diff -u on the same inputs. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { unifiedDiff } from "../../../src/core/diff";

function gnuDiff(a: string, b: string): string {
  const dir = mkdtempSync(join(tmpdir(), "backlog-diff-"));
  writeFileSync(join(dir, "a"), a);
  writeFileSync(join(dir, "b"), b);
  try {
    execFileSync("diff", ["-u", join(dir, "a"), join(dir, "b")], { encoding: "utf8" });
    return "";
  } catch (err) {
    const out = (err as { stdout: string }).stdout;
    return out.split("\n").slice(2).join("\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Applies a unified diff made with enough context to rebuild the new side. */
function applyDiff(a: string, diff: string): string {
  const src = a.split("\n");
  if (src[src.length - 1] === "") src.pop();
  const out: string[] = [];
  let at = 0;
  for (const line of diff.split("\n").slice(2)) {
    const h = /^@@ -(\d+),(\d+) /.exec(line);
    if (h) {
      const start = Number(h[2]) === 0 ? Number(h[1]) : Number(h[1]) - 1;
      while (at < start) out.push(src[at++] as string);
    } else if (line.startsWith(" ")) {
      out.push(line.slice(1));
      at++;
    } else if (line.startsWith("-")) at++;
    else if (line.startsWith("+")) out.push(line.slice(1));
  }
  while (at < src.length) out.push(src[at++] as string);
  return out.length ? out.join("\n") + "\n" : "";
}

test("equal texts give no diff", () => {
  expect(unifiedDiff("a\nb\n", "a\nb\n")).toBe("");
});

test("a changed backlog line shows as one - and one + line with context", () => {
  const before = "[www]\nlisten = /run/php/www.sock\nlisten.backlog = 1000\npm = static\n";
  const after = before.replace("1000", "8192");
  expect(unifiedDiff(before, after)).toBe(
    "--- host\n+++ profile\n@@ -1,4 +1,4 @@\n [www]\n listen = /run/php/www.sock\n-listen.backlog = 1000\n+listen.backlog = 8192\n pm = static\n",
  );
});

test("hunks are the same as GNU diff -u's (same lines, same order, same headers) for arbitrary small files", () => {
  const line = fc.constantFrom("a", "b", "c", "d", "listen = 1", "pm = static", "");
  const file = fc.array(line, { maxLength: 14 }).map((l) => (l.length ? l.join("\n") + "\n" : ""));
  fc.assert(
    fc.property(file, file, (a, b) => {
      const ours = unifiedDiff(a, b, { maxLines: 10_000 });
      const theirs = gnuDiff(a, b);
      if (a === b) return ours === "";
      // The LCS length is unique: as many lines removed and added as GNU diff; and our hunks turn a into b.
      const count = (d: string, c: string) => d.split("\n").filter((l) => l.startsWith(c) && !l.startsWith(c.repeat(3))).length;
      expect(count(ours, "-")).toBe(count(theirs, "-"));
      expect(count(ours, "+")).toBe(count(theirs, "+"));
      expect(applyDiff(a, ours)).toBe(b);
      return true;
    }),
    { numRuns: 60 },
  );
});

test("a long diff is capped and says how much was left out", () => {
  const a = Array.from({ length: 200 }, (_, i) => `line ${i}`).join("\n") + "\n";
  const b = Array.from({ length: 200 }, (_, i) => `LINE ${i}`).join("\n") + "\n";
  const d = unifiedDiff(a, b, { maxLines: 20 });
  expect(d.split("\n")).toHaveLength(22);
  expect(d).toMatch(/… \d+ more line\(s\)\n$/);
});
