/**
 * What Pulumi.yaml runs: this repository's deployment program, index.ts, compiled with the library
 * it imports (src/) into .build/ (git-ignored) by tsc with tsconfig.program.json, then required.
 *
 * Why compiled, not run by ts-node: the compile (2 to 3 s of every `pulumi up`) happens once per
 * change of the sources; and from compiled JavaScript the dynamic provider's code stays out of the
 * stack's state (src/pulumi/hostSettings.ts `providerFor`), which the engine writes after every step.
 *
 * Never stale: .build/sources.sha256 holds the digest of the sources it was built from (index.ts,
 * src/**, the tsconfig files); when they differ now, this compiles first (about 4 s), into a new
 * folder that then replaces .build/, so that a run already going keeps a whole build.
 * `node main.js --build` (`npm run build:program`; npm ci runs it) only brings .build/ up to date.
 */
const { createHash } = require("node:crypto");
const { execFileSync } = require("node:child_process");
const { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } = require("node:fs");
const { join, relative } = require("node:path");

const root = __dirname;
const out = join(root, ".build");
const stampName = "sources.sha256";

/** The files the build reads, sorted: index.ts, the tsconfig files, and src/ (TypeScript and JSON). */
function sources() {
  const files = ["index.ts", "tsconfig.json", "tsconfig.program.json"].map((f) => join(root, f));
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|json)$/.test(e.name)) files.push(p);
    }
  };
  walk(join(root, "src"));
  return files.sort();
}

/** The digest of every source's path and content. */
function digest() {
  const h = createHash("sha256");
  for (const f of sources())
    h.update(`${relative(root, f)}\0`)
      .update(readFileSync(f))
      .update("\0");
  return h.digest("hex");
}

/** Compiles into a new folder and puts it in place of .build/ (no-op when .build/ is current). */
function build() {
  const want = digest();
  const stamp = join(out, stampName);
  if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === want) return;
  const next = `${out}.${process.pid}`;
  rmSync(next, { recursive: true, force: true });
  try {
    const tsc = require.resolve("typescript/bin/tsc", { paths: [root] });
    execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.program.json"), "--outDir", next], { cwd: root, encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    rmSync(next, { recursive: true, force: true });
    const output = `${err.stdout ?? ""}${err.stderr ?? ""}`.trim() || err.message;
    throw new Error(`the deployment program does not compile (tsc -p tsconfig.program.json):\n${output}`);
  }
  writeFileSync(join(next, stampName), `${want}\n`);
  const old = `${out}.old.${process.pid}`;
  if (existsSync(out)) renameSync(out, old);
  renameSync(next, out);
  rmSync(old, { recursive: true, force: true });
}

build();
if (require.main === module) {
  if (process.argv[2] !== "--build") {
    console.error("usage: node main.js --build   (brings .build/ up to date; `pulumi up` runs this file as the program)");
    process.exit(2);
  }
} else {
  // Pulumi's program runner maps every stack trace through source-map-support, and the SDK takes a
  // stack trace for every resource and for most of its promises: about 0.9 CPU s of a 30-host run
  // (a sixth of the program's time). Stack traces of this program name .build/*.js lines instead
  // (each has its .map next to it); the library's error messages do not depend on them.
  Error.prepareStackTrace = undefined;
  module.exports = require("./.build/index.js");
}
