/**
 * The npm package: `npm pack --dry-run --json` (which builds dist/ through `prepack`) must list
 * exactly what users need — compiled JS and declarations of every library module, the templates,
 * README, CHANGELOG, package.json — and nothing else: no TypeScript sources, tests, scripts, lab,
 * examples, policy pack, deployment program or source maps. And what package.json points at
 * (`exports`, `types`) must be in it, with every runtime import of the library a dependency.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";

jest.setTimeout(180_000);

const repo = join(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));

interface PackResult {
  name: string;
  version: string;
  filename: string;
  files: { path: string; size: number }[];
}

let packed: PackResult;
let files: string[];

/** Library sources: every .ts file under src/, relative to it, without the extension. */
function librarySources(dir = join(repo, "src"), ending = ".ts"): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return librarySources(path, ending);
    return e.name.endsWith(ending) && !e.name.endsWith(".d.ts") ? [relative(join(repo, "src"), path).slice(0, -ending.length)] : [];
  });
}

/** The library's data files (JSON beside the code, e.g. the rules' texts), without the ending. */
const libraryData = () => librarySources(join(repo, "src"), ".json");

beforeAll(() => {
  // prepack runs `build:lib` (a fresh dist/); with --json its output goes to stderr, the report to stdout.
  const out = execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  [packed] = JSON.parse(out.slice(out.indexOf("["))) as PackResult[];
  files = packed.files.map((f) => f.path).sort();
});

test("the tarball is named after the package and its version", () => {
  expect(packed.name).toBe("pulumi-backlog");
  expect(packed.version).toBe(pkg.version);
  expect(packed.filename).toBe(`pulumi-backlog-${pkg.version}.tgz`);
});

test("it holds the compiled JS and declarations of every library module, and the templates", () => {
  const sources = librarySources();
  expect(sources).toEqual(
    expect.arrayContaining(["index", "pulumi/backlogHost", "pulumi/backlogFleet", "pulumi/hostSettings", "core/render", "transport/ssh"]),
  );
  for (const s of sources) {
    expect(files).toContain(`dist/${s}.js`);
    expect(files).toContain(`dist/${s}.d.ts`);
  }
  expect(libraryData()).toContain("core/profile/ruleTexts");
  for (const d of libraryData()) expect(files).toContain(`dist/${d}.json`);
  // A data file named like a module would shadow it where .ts is resolved after .json (ts-node,
  // which runs the deployment program: `require("./rules")` found rules.json before rules.ts).
  for (const d of libraryData()) expect(sources).not.toContain(d);
  const templates = readdirSync(join(repo, "templates")).filter((f) => f.endsWith(".mustache"));
  expect(templates.length).toBeGreaterThanOrEqual(3);
  for (const t of templates) expect(files).toContain(`templates/${t}`);
});

test("it holds nothing else: no sources, tests, scripts, lab, examples, policy pack, program or maps", () => {
  const sources = new Set(librarySources());
  const unexpected = files.filter((f) => {
    if (["package.json", "README.md", "CHANGELOG.md", "LICENSE"].includes(f)) return false;
    const compiled = /^dist\/(.+)\.(js|d\.ts)$/.exec(f);
    if (compiled) return !sources.has(compiled[1]);
    const data = /^dist\/(.+)\.json$/.exec(f);
    if (data) return !libraryData().includes(data[1] as string);
    return !/^templates\/[^/]+\.mustache$/.test(f);
  });
  expect(unexpected).toEqual([]);
  for (const f of files) {
    expect(f).not.toMatch(/^(test|scripts|examples|policy|components|docs|reports|node_modules|\.lab|\.pulumi-state)\//);
    expect(f).not.toMatch(/\.map$|^Pulumi.*\.yaml$|^tsconfig.*\.json$|^jest\.config|^index\.ts$|\.tgz$/);
  }
  expect(files).toEqual(expect.arrayContaining(["package.json", "README.md", "CHANGELOG.md"]));
});

test("everything package.json points users at is in the tarball", () => {
  const targets: string[] = [pkg.types];
  for (const [subpath, target] of Object.entries(pkg.exports as Record<string, string | Record<string, string>>)) {
    if (subpath.includes("*")) continue;
    targets.push(...(typeof target === "string" ? [target] : Object.values(target)));
  }
  expect(pkg.exports["."]).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
  for (const t of targets) expect(files).toContain(t.replace(/^\.\//, ""));
  // Serialized dynamic-provider code of a program that installed the package require()s the modules
  // the provider uses through this subpath (Pulumi's closure serializer maps node_modules files to
  // package exports); see docs and test/integration/package.test.ts.
  expect(pkg.exports["./internal/*.js"]).toBe("./dist/*.js");
});

test("every package the library imports at run time is a dependency (@pulumi/aws: an optional peer, for the aws entry only)", () => {
  const imported = new Set<string>();
  for (const s of librarySources()) {
    const text = readFileSync(join(repo, "src", `${s}.ts`), "utf8");
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^;]*?from\s+"([^"]+)"/gm)) {
      const spec = m[1];
      if (spec.startsWith(".") || spec.startsWith("node:")) continue;
      imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
    }
  }
  const packages = [...imported].filter((p) => !builtinModules.includes(p)).sort();
  expect(packages).toEqual(expect.arrayContaining(["@pulumi/pulumi", "mustache", "ssh2"]));
  const aws = "@pulumi/aws";
  for (const p of packages.filter((p) => p !== aws)) expect(Object.keys(pkg.dependencies)).toContain(p);
  expect(pkg.peerDependencies[aws]).toBeDefined();
  expect(pkg.peerDependenciesMeta[aws]).toEqual({ optional: true });
  // Only the aws entry point may load it: the main entry never does.
  for (const s of librarySources().filter((s) => !s.startsWith("aws/"))) {
    expect(readFileSync(join(repo, "src", `${s}.ts`), "utf8")).not.toMatch(/from\s+"@pulumi\/aws"/);
  }
});

test("the layout is the architecture: src/core imports nothing of Pulumi, ssh2 or the outer folders; transport knows no Pulumi", () => {
  const importsOf = (s: string): string[] =>
    [...readFileSync(join(repo, "src", `${s}.ts`), "utf8").matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|require\("([^"]+)"\)/gm)].map(
      (m) => m[1] ?? m[2],
    );
  const core = librarySources().filter((s) => s.startsWith("core/"));
  expect(core).toEqual(
    expect.arrayContaining([
      "core/profile/index",
      "core/profile/walk",
      "core/profile/rules",
      "core/plan",
      "core/converge",
      "core/standalone",
      "core/aws/userData",
    ]),
  );
  for (const s of core) {
    for (const spec of importsOf(s)) {
      expect(`${s}: ${spec}`).not.toMatch(/: (@pulumi\/|ssh2)/);
      // Relative imports stay inside src/core.
      if (spec.startsWith(".")) expect(relative(join(repo, "src", "core"), join(repo, "src", s, "..", spec))).not.toMatch(/^\.\./);
    }
  }
  for (const s of librarySources().filter((s) => s.startsWith("transport/"))) {
    for (const spec of importsOf(s)) expect(`${s}: ${spec}`).not.toMatch(/: (@pulumi\/|\.\.\/(pulumi|aws)\b)/);
  }
});
