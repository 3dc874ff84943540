/**
 * The documentation a newcomer walks: README.md and the guides in docs/*.md.
 *
 * - Every relative link points to a file or folder that exists, and a `#anchor` to a heading that
 *   exists in the target markdown file (GitHub's heading ids). Links inside code blocks and inline
 *   code are not links. The generated API reference (docs/api/) is a link target, not checked itself.
 * - Every guide in docs/ is linked from the README.
 * - The README stays short (under 8 KB) and still tells a user to run what CI runs (.ci/run:
 *   `npm ci`, then `npm test`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const repo = resolve(__dirname, "../..");
const docsDir = join(repo, "docs");
const pages = [
  join(repo, "README.md"),
  ...readdirSync(docsDir)
    .filter((f) => f.endsWith(".md"))
    .map((f) => join(docsDir, f)),
];

/** Markdown text with fenced code blocks blanked out (line numbers kept). */
function withoutFences(text: string): string {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of text.split("\n")) {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && m) {
      fence = m[1][0].repeat(m[1].length);
      out.push("");
    } else if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null;
      out.push("");
    } else {
      out.push(line);
    }
  }
  return out.join("\n");
}

/** Markdown text with fenced code blocks and inline code blanked out (line numbers kept). */
function withoutCode(text: string): string {
  return withoutFences(text)
    .split("\n")
    .map((line) => line.replace(/(`+)(?:(?!\1).)+?\1/g, (s) => " ".repeat(s.length)))
    .join("\n");
}

/** Inline links and images `[text](target "title")`: their targets, with the line they are on. */
function links(text: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = [];
  withoutCode(text)
    .split("\n")
    .forEach((line, i) => {
      for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: m[1], line: i + 1 });
    });
  return found;
}

/** GitHub's id of a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, … */
function headingIds(text: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutFences(text).split("\n")) {
    const m = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

function problemsOf(page: string): string[] {
  const text = readFileSync(page, "utf8");
  const problems: string[] = [];
  for (const { target, line } of links(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
    const [pathPart, anchor] = target.split("#", 2) as [string, string | undefined];
    const file = pathPart === "" ? page : resolve(dirname(page), decodeURIComponent(pathPart));
    const where = `${relative(repo, page)}:${line}: link ${target}`;
    if (!file.startsWith(repo)) {
      problems.push(`${where}: points outside the repository`);
      continue;
    }
    if (!existsSync(file)) {
      problems.push(`${where}: ${relative(repo, file)} does not exist`);
      continue;
    }
    if (anchor !== undefined && anchor !== "") {
      if (statSync(file).isDirectory() || !file.endsWith(".md")) {
        problems.push(`${where}: an anchor into ${relative(repo, file)}, which is not a markdown file`);
      } else if (!headingIds(readFileSync(file, "utf8")).has(anchor)) {
        problems.push(`${where}: no heading with id "${anchor}" in ${relative(repo, file)} (ids: ${[...headingIds(readFileSync(file, "utf8"))].join(", ")})`);
      }
    }
  }
  return problems;
}

describe("documentation links", () => {
  test("the link checker sees links, skips code, and makes GitHub's heading ids", () => {
    const md =
      'See [a](docs/a.md#x) and ![i](img.png "t").\n`[not](a link)`\n```\n[nor](this)\n# nor a heading\n```\n## Fault table (`faults.test.ts`): 2\n## Fault table (`faults.test.ts`): 2\n';
    expect(links(md)).toEqual([
      { target: "docs/a.md#x", line: 1 },
      { target: "img.png", line: 1 },
    ]);
    expect([...headingIds(md)]).toEqual(["fault-table-faultstestts-2", "fault-table-faultstestts-2-1"]);
  });

  test.each(pages.map((p) => [relative(repo, p), p]))("%s: every relative link points to an existing file and heading", (_name, page) => {
    expect(problemsOf(page)).toEqual([]);
  });

  test("every guide in docs/ is linked from the README", () => {
    const linked = new Set(links(readFileSync(join(repo, "README.md"), "utf8")).map((l) => resolve(repo, l.target.split("#")[0])));
    const unlinked = pages
      .slice(1)
      .filter((p) => !linked.has(p))
      .map((p) => relative(repo, p));
    expect(unlinked).toEqual([]);
  });
});

describe("README", () => {
  const readme = readFileSync(join(repo, "README.md"), "utf8");

  test("stays short: under 8 KB (the rest belongs in docs/)", () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(8192);
  });

  test("tells a user to run exactly what CI runs: npm ci, then npm test", () => {
    const ci = readFileSync(join(repo, ".ci/run"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => /^npm /.test(l));
    expect(ci).toEqual(["npm ci", "npm test"]);
    expect(readme).toMatch(/^npm ci && npm test\b/m);
  });
});
