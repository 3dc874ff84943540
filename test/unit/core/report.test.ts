/**
 * parseReport (src/core/report.ts): what a host script printed is untrusted input. Only lines
 * starting with `@@<token> ` open a section; every body must have its section's exact shape.
 *
 * The property tests build a "genuine" report (what the script prints, from generated values, with
 * the HostReport it stands for computed here independently), then feed it hostile text: extra lines
 * inside section bodies, and hostile unix socket names in socket rows. The parser must either throw
 * a ReportError or return exactly the genuine values: never a kernel, socket or file value taken
 * from the hostile text.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reportToken } from "../../../src/core/plan";
import { type HostReport, effectiveOf, parseReport } from "../../../src/core/report";
import { type ListeningSocket, splitAddress } from "../../../src/core/verify";

const TOKEN = "0123456789abcdef0123456789abcdef";
const OTHER = "fedcba9876543210fedcba9876543210";
const MAX_U32 = 4294967295;

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const at = (section: string, token = TOKEN) => `@@${token} ${section}`;

/** True when `f` throws a ReportError (and only that). */
function rejects(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (err) {
    expect((err as Error).name).toBe("ReportError");
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Generated genuine reports.

interface Section {
  head: string;
  body: string[];
}

interface UnixRow {
  netid: "u_str" | "u_seq";
  recvQ: number;
  backlog: number;
  inode: number;
}
interface TcpRow {
  recvQ: number;
  backlog: number;
  local: string;
  inode: number;
  extra: string;
}

interface Genuine {
  sysctls: [string, number | undefined][];
  files: [string, { content: string; big: boolean } | null][];
  sources: string[];
  unix: [string, UnixRow[]][];
  tcp: [number, TcpRow[]][];
  container: string;
  units: [string, string][];
  before: [string, number][];
  applied: [string, number][];
  own: [string, number][];
  managed: string[];
  owners: [string, string[]][];
  journal: boolean;
  generation: number;
  steps: string[];
  recovered: boolean;
  did: [string, string, string[]][];
  warnings: string[];
}

const KEYS = ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog"];
const PATHS = [
  "/etc/sysctl.d/zz-pulumi-backlog.conf",
  "/etc/php/8.2/fpm/pool.d/www.conf",
  "/etc/nginx/conf.d/pulumi-backlog.conf",
  "/etc/php/8.2/fpm/pool.d/api.conf",
];
const SOCKETS = ["/run/php/php8.2-fpm.sock", "/run/php/app.sock", "/var/run/api-1.sock"];
const PORTS = [80, 443, 8080, 9000];
const HOSTS = ["0.0.0.0", "127.0.0.1", "[::]", "[::1]", "*", "[fe80::1]%lo", "10.0.0.5"];
const UNITS = ["php8.2-fpm", "nginx", "php-fpm@api.service"];
const STATES = ["active", "inactive", "failed", "activating", "reloading", "unknown"];

const u32 = fc.integer({ min: 0, max: MAX_U32 });
const uniqueBy = <T>(arb: fc.Arbitrary<T>, key: (t: T) => unknown, maxLength = 3) => fc.uniqueArray(arb, { selector: key, maxLength });

const genuineArb: fc.Arbitrary<Genuine> = fc.record({
  sysctls: uniqueBy(fc.tuple(fc.constantFrom(...KEYS), fc.option(u32, { nil: undefined })), (t) => t[0]),
  files: uniqueBy(
    fc.tuple(
      fc.constantFrom(...PATHS),
      fc.option(fc.record({ content: fc.string({ unit: "binary", minLength: 1, maxLength: 120 }), big: fc.boolean() }), { nil: null }),
    ),
    (t) => t[0],
  ),
  sources: fc.array(
    fc
      .tuple(
        fc.constantFrom("/etc/sysctl.d/99-sysctl.conf", "/usr/lib/sysctl.d/50-default.conf", "/etc/sysctl.conf", "/run/sysctl.d/zz.conf"),
        fc.constantFrom(...KEYS),
        u32,
      )
      .map(([f, k, v]) => `${f}:${k} = ${v}`),
    { maxLength: 3 },
  ),
  unix: uniqueBy(
    fc.tuple(
      fc.constantFrom(...SOCKETS),
      fc.array(
        fc.record({
          netid: fc.constantFrom("u_str" as const, "u_seq" as const),
          recvQ: fc.integer({ min: 0, max: 70000 }),
          backlog: u32,
          inode: u32,
        }),
        { maxLength: 2 },
      ),
    ),
    (t) => t[0],
  ),
  tcp: uniqueBy(
    fc.tuple(
      fc.constantFrom(...PORTS),
      fc.array(
        fc.record({
          recvQ: fc.integer({ min: 0, max: 70000 }),
          backlog: u32,
          local: fc.constantFrom(...HOSTS),
          inode: fc.integer({ min: 0, max: 9999999999 }),
          extra: fc.constantFrom("", " sk:1", " uid:33 sk:ffff8a", " sk:1 <->"),
        }),
        { maxLength: 2 },
      ),
    ),
    (t) => t[0],
  ).map((list) => list.map(([port, rows]): [number, TcpRow[]] => [port, rows.map((r) => ({ ...r, local: `${r.local}:${port}` }))])),
  container: fc.constantFrom("none", "docker", "systemd-nspawn", "lxc"),
  units: uniqueBy(fc.tuple(fc.constantFrom(...UNITS), fc.constantFrom(...STATES)), (t) => t[0]),
  before: uniqueBy(fc.tuple(fc.constantFrom(...KEYS), u32), (t) => t[0]),
  applied: uniqueBy(fc.tuple(fc.constantFrom(...KEYS), u32), (t) => t[0]),
  own: uniqueBy(fc.tuple(fc.constantFrom(...KEYS), u32), (t) => t[0]),
  managed: fc.uniqueArray(fc.constantFrom(...PATHS), { maxLength: 3 }),
  owners: uniqueBy(
    fc.tuple(fc.constantFrom("web1", "backlog.prod.web-2", "standalone"), fc.uniqueArray(fc.constantFrom(...PATHS), { minLength: 1, maxLength: 3 })),
    (t) => t[0],
    2,
  ),
  journal: fc.boolean(),
  generation: fc.integer({ min: 0, max: 9999999999 }),
  steps: fc.array(fc.constantFrom("lock", "recover", "ports", "journal", "write 0123456789abcdef", "test", "service nginx", "commit"), { maxLength: 4 }),
  recovered: fc.boolean(),
  did: fc.array(
    fc.tuple(
      fc.constantFrom(...UNITS),
      fc.constantFrom("relisten", "reload", "restart"),
      fc.array(fc.constantFrom("listened socket 1 of pid 2 with backlog 3", "ok"), { maxLength: 2 }),
    ),
    { maxLength: 2 },
  ),
  warnings: fc.array(fc.constantFrom("shared with other owners: kernel values left as they are", "no original kept for /etc/x"), { maxLength: 2 }),
});

function unixLine(path: string, r: UnixRow): string {
  return `${r.netid} LISTEN ${r.recvQ}      ${r.backlog}   ${path} ${r.inode}            * 0`;
}

function tcpLine(r: TcpRow): string {
  return `LISTEN ${r.recvQ}      ${r.backlog}   ${r.local}   ${r.local.startsWith("[") ? "[::]:*" : "0.0.0.0:*"} ino:${r.inode}${r.extra}`;
}

/** The sections the script prints for `g`, in its order. */
function sections(g: Genuine): Section[] {
  const s: Section[] = [];
  for (const step of g.steps) s.push({ head: `step ${step}`, body: [] });
  if (g.recovered) s.push({ head: "recovered", body: [] });
  for (const [unit, action, out] of g.did) s.push({ head: `did ${unit} ${action}`, body: out });
  for (const w of g.warnings) s.push({ head: `warning ${w}`, body: [] });
  for (const [k, v] of g.sysctls) s.push({ head: `sysctl ${k}`, body: [v === undefined ? "!missing" : String(v)] });
  for (const [p, f] of g.files) {
    if (f === null) s.push({ head: `file ${p}`, body: ["!absent"] });
    else {
      const bytes = Buffer.from(f.content, "utf8");
      s.push({ head: `file ${p}`, body: f.big ? [sha(bytes)] : [sha(bytes), bytes.toString("base64")] });
    }
  }
  s.push({ head: "sysctl.d", body: g.sources });
  for (const [p, rows] of g.unix) s.push({ head: `unix ${p}`, body: rows.map((r) => unixLine(p, r)) });
  for (const [port, rows] of g.tcp) s.push({ head: `tcp ${port}`, body: rows.map(tcpLine) });
  s.push({ head: "container", body: [g.container] });
  for (const [u, st] of g.units) s.push({ head: `unit ${u}`, body: [st] });
  s.push({ head: "before", body: g.before.map(([k, v]) => `sysctl.${k}:${v}`) });
  s.push({ head: "applied", body: [...g.applied.map(([k, v]) => `applied.${k}:${v}`), ...g.own.map(([k, v]) => `own.${k}:${v}`)] });
  s.push({ head: "managed", body: [...g.managed.flatMap((p) => [p, ""])] });
  s.push({ head: "owners", body: g.owners.flatMap(([o, paths]) => paths.map((p) => `${o}:${p}`)) });
  s.push({ head: "journal", body: [g.journal ? "open" : "none"] });
  s.push({ head: "generation", body: [String(g.generation)] });
  s.push({ head: "end", body: [] });
  return s;
}

function text(s: Section[], token = TOKEN): string {
  return s.map((x) => [at(x.head, token), ...x.body].join("\n")).join("\n") + "\n";
}

/** The HostReport `g` stands for, computed without the parser. */
function expectedOf(g: Genuine): HostReport {
  const sockets: ListeningSocket[] = [
    ...g.unix.flatMap(([path, rows]) =>
      rows.map(
        (r): ListeningSocket => ({
          kind: "unix",
          netid: r.netid,
          recvQ: r.recvQ,
          backlog: r.backlog,
          local: path,
          host: null,
          port: null,
          path,
          inode: r.inode,
        }),
      ),
    ),
    ...g.tcp.flatMap(([port, rows]) =>
      rows.map(
        (r): ListeningSocket => ({
          kind: "tcp",
          netid: null,
          recvQ: r.recvQ,
          backlog: r.backlog,
          local: r.local,
          host: splitAddress(r.local).host,
          port,
          path: null,
          inode: r.inode,
        }),
      ),
    ),
  ];
  return {
    sysctls: Object.fromEntries(g.sysctls),
    files: Object.fromEntries(g.files.map(([p, f]) => [p, f === null ? null : sha(Buffer.from(f.content, "utf8"))])),
    contents: Object.fromEntries(g.files.flatMap(([p, f]) => (f === null || f.big ? [] : [[p, f.content]]))),
    sysctlSources: g.sources,
    sockets,
    units: Object.fromEntries(g.units),
    before: Object.fromEntries(g.before),
    managed: g.managed,
    owners: Object.fromEntries(g.owners),
    container: g.container,
    applied: Object.fromEntries(g.applied),
    own: Object.fromEntries(g.own),
    retired: [],
    journalOpen: g.journal,
    generation: g.generation,
    recovered: g.recovered,
    steps: g.steps,
    did: g.did.map(([unit, action, out]) => ({ unit, action, output: out.join("\n") })),
    fallbacks: {},
    warnings: g.warnings,
    complete: true,
  };
}

/** The values that must never come from hostile text: kernel values, files, sockets, units, state. */
function values(r: HostReport) {
  return {
    sysctls: r.sysctls,
    files: r.files,
    contents: r.contents,
    sockets: r.sockets,
    units: r.units,
    before: r.before,
    applied: r.applied,
    own: r.own,
    container: r.container,
    journalOpen: r.journalOpen,
    generation: r.generation,
    complete: r.complete,
    recovered: r.recovered,
    rolledBack: r.rolledBack,
    failure: r.failure?.step,
  };
}

// ---------------------------------------------------------------------------------------------
// Hostile text.

const hostileLine: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "binary-ascii", maxLength: 40 }),
  fc.constantFrom(
    "@@",
    "@@ ",
    "@@@@",
    `@@${OTHER}`,
    `@@${OTHER} sysctl net.core.somaxconn`,
    `@@${OTHER} end`,
    `@@${OTHER} file /etc/php/8.2/fpm/pool.d/www.conf`,
    "@@ sysctl net.core.somaxconn",
    "@@ unix /run/php/php8.2-fpm.sock",
    `@@${TOKEN.toUpperCase()} sysctl net.core.somaxconn`,
    ` @@${TOKEN} sysctl net.core.somaxconn`,
    `@@${TOKEN}sysctl net.core.somaxconn`,
    `@@${TOKEN}\tsysctl net.core.somaxconn`,
    "\0",
    "\u0000@@",
    "\r",
    "\r\n",
    "\u2028",
    "\u0085",
    "99999999999999999999",
    "4294967296",
    "18446744073709551616",
    "1e9",
    "0x10",
    "-1",
    "+5",
    " 12",
    "65535",
    "!missing",
    "!absent",
    "open",
    "none",
    "active",
    sha("forged"),
    Buffer.from("forged").toString("base64"),
    "u_str LISTEN 0 65535 /run/evil.sock 1 * 0",
    "u_str LISTEN 0 65535 /RUN/PHP/PHP8.2-FPM.SOCK 1 * 0",
    "LISTEN 0 65535 0.0.0.0:9999 0.0.0.0:* ino:1",
    "LISTEN 0 65535 0.0.0.0:80800 0.0.0.0:* ino:1",
    "tcp LISTEN 0 65535 0.0.0.0:80 0.0.0.0:* ino:1",
  ),
  fc.tuple(fc.constantFrom("@@", `@@${OTHER} `, "\n", "\0"), fc.string({ unit: "binary", maxLength: 20 })).map(([a, b]) => a + b),
  fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String),
);

/** Text that carries the run's token was printed by the script itself: the token is the only secret. */
const carriesToken = (s: string) => s.includes(TOKEN);

describe("every section", () => {
  test("an apply's report: every section parsed into its field", () => {
    const content = "listen.backlog = 8192\n";
    const b64 = Buffer.from(content).toString("base64");
    const out = [
      "anything before the first section is not part of the report",
      at("step lock"),
      at("step recover"),
      at("recovered"),
      at("step write 0123456789abcdef"),
      at("changed 0123456789abcdef"),
      at("did php8.2-fpm relisten"),
      "listened socket 4242 of pid 17 with backlog 8192",
      at("fallback nginx"),
      "socket 99 is not held by the unit's processes",
      at("did nginx restart (fallback)"),
      at("warning shared with other owners: kernel values left as they are"),
      at("sysctl net.core.somaxconn"),
      "8192",
      at("sysctl net.core.netdev_max_backlog"),
      "!missing",
      at("file /etc/php/8.2/fpm/pool.d/www.conf"),
      sha(content),
      b64,
      at("file /etc/nginx/conf.d/big.conf"),
      sha("x".repeat(70000)),
      at("file /etc/sysctl.d/zz-pulumi-backlog.conf"),
      "!absent",
      at("sysctl.d"),
      "/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024",
      "/usr/lib/sysctl.d/50-default.conf:-net.ipv4.tcp_max_syn_backlog=512",
      at("unix /run/php/php8.2-fpm.sock"),
      "u_str LISTEN 0      8192   /run/php/php8.2-fpm.sock 4242            * 0",
      at("tcp 8080"),
      "LISTEN 3      511          0.0.0.0:8080      0.0.0.0:* ino:5151 sk:1 <->",
      "LISTEN 0 511 [::]:8080 [::]:* uid:33 ino:5152 sk:2",
      at("container"),
      "none",
      at("unit php8.2-fpm"),
      "active",
      at("unit nginx"),
      "reloading",
      at("before"),
      "sysctl.net.core.somaxconn:4096",
      at("applied"),
      "applied.net.core.somaxconn:8192",
      "own.net.core.somaxconn:4096",
      at("managed"),
      "/etc/php/8.2/fpm/pool.d/www.conf",
      "",
      at("owners"),
      "web1:/etc/php/8.2/fpm/pool.d/www.conf",
      "web1:/etc/nginx/conf.d/big.conf",
      "standalone:/etc/sysctl.d/zz-pulumi-backlog.conf",
      at("journal"),
      "none",
      at("generation"),
      "7",
      at("end"),
      "",
    ].join("\n");
    const r = parseReport(out, TOKEN);
    expect(r).toEqual({
      sysctls: { "net.core.somaxconn": 8192, "net.core.netdev_max_backlog": undefined },
      files: {
        "/etc/php/8.2/fpm/pool.d/www.conf": sha(content),
        "/etc/nginx/conf.d/big.conf": sha("x".repeat(70000)),
        "/etc/sysctl.d/zz-pulumi-backlog.conf": null,
      },
      contents: { "/etc/php/8.2/fpm/pool.d/www.conf": content },
      sysctlSources: ["/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024", "/usr/lib/sysctl.d/50-default.conf:-net.ipv4.tcp_max_syn_backlog=512"],
      sockets: [
        {
          kind: "unix",
          netid: "u_str",
          recvQ: 0,
          backlog: 8192,
          local: "/run/php/php8.2-fpm.sock",
          host: null,
          port: null,
          path: "/run/php/php8.2-fpm.sock",
          inode: 4242,
        },
        { kind: "tcp", netid: null, recvQ: 3, backlog: 511, local: "0.0.0.0:8080", host: "0.0.0.0", port: 8080, path: null, inode: 5151 },
        { kind: "tcp", netid: null, recvQ: 0, backlog: 511, local: "[::]:8080", host: "::", port: 8080, path: null, inode: 5152 },
      ],
      units: { "php8.2-fpm": "active", nginx: "reloading" },
      before: { "net.core.somaxconn": 4096 },
      managed: ["/etc/php/8.2/fpm/pool.d/www.conf"],
      owners: { web1: ["/etc/php/8.2/fpm/pool.d/www.conf", "/etc/nginx/conf.d/big.conf"], standalone: ["/etc/sysctl.d/zz-pulumi-backlog.conf"] },
      container: "none",
      applied: { "net.core.somaxconn": 8192 },
      own: { "net.core.somaxconn": 4096 },
      journalOpen: false,
      generation: 7,
      recovered: true,
      retired: [],
      steps: ["lock", "recover", "write 0123456789abcdef"],
      did: [
        { unit: "php8.2-fpm", action: "relisten", output: "listened socket 4242 of pid 17 with backlog 8192" },
        { unit: "nginx", action: "restart", output: "" },
      ],
      fallbacks: { nginx: "socket 99 is not held by the unit's processes" },
      warnings: ["shared with other owners: kernel values left as they are"],
      complete: true,
    });
    expect(effectiveOf(r)).toMatchObject({ sysctls: r.sysctls, sockets: r.sockets });
    // No sysctl files in the report: every tool leaves the running value.
    expect(effectiveOf(r).persisted?.["sysctl --system"]?.["net.core.somaxconn"]).toEqual({ value: r.sysctls["net.core.somaxconn"] });
  });

  test("a failed run: the failure's step and output, whether it was rolled back, not complete", () => {
    const failed = [at("step test"), at("rolledback"), at("failed test php8.2-fpm"), "ERROR: [pool www] 'pm.max_children' must be > 0", "", "more output"].join(
      "\n",
    );
    const r = parseReport(failed, TOKEN);
    expect(r.failure).toEqual({ step: "test php8.2-fpm", output: "ERROR: [pool www] 'pm.max_children' must be > 0\n\nmore output" });
    expect(r.rolledBack).toBe(true);
    expect(r.complete).toBe(false);
    expect(r.steps).toEqual(["test"]);
    expect(parseReport([at("rollback-incomplete"), at("failed service nginx")].join("\n"), TOKEN).rolledBack).toBe(false);
    expect(parseReport(at("step lock"), TOKEN).rolledBack).toBeUndefined();
  });

  test("an empty or cut-off report is not complete; a container body may be empty (no systemd-detect-virt)", () => {
    expect(parseReport("", TOKEN).complete).toBe(false);
    const r = parseReport([at("sysctl net.core.somaxconn"), "4096", at("container")].join("\n"), TOKEN);
    expect(r.complete).toBe(false);
    expect(r.sysctls).toEqual({ "net.core.somaxconn": 4096 });
    expect(r.container).toBe("");
  });

  test("the token must be 16-64 lowercase hex digits", () => {
    for (const bad of ["", "abc", "0123456789ABCDEF", "0123456789abcdeg", "x".repeat(65)]) {
      expect(rejects(() => parseReport("", bad))).toBe(true);
    }
    expect(reportToken()).toMatch(/^[0-9a-f]{32}$/);
    expect(reportToken()).not.toBe(reportToken());
  });

  test("property: any generated genuine report parses to exactly the values it stands for", () => {
    fc.assert(
      fc.property(genuineArb, (g) => {
        expect(parseReport(text(sections(g)), TOKEN)).toEqual(expectedOf(g));
      }),
      { numRuns: 300 },
    );
  });
});

describe("hostile text", () => {
  // What a line of hostile text can never be: a section of this run (that needs the token, which
  // is random per run and never on a host's command line). A line inside a body that has exactly
  // the shape of that body's own lines (a `sysctl.KEY:N` line inside `before`, a row of the very
  // path inside `unix PATH`) is indistinguishable by construction: the script prints those bodies
  // from root-only sources or from ss's exact path/port filter, so the generators leave such lines out.
  test("property: extra lines inside any section body are rejected, or leave every value as the genuine report had it", () => {
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(
        genuineArb,
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.array(hostileLine, { minLength: 1, maxLength: 3 })), { minLength: 1, maxLength: 3 }),
        (g, injections) => {
          const all = injections.flatMap(([, , lines]) => lines);
          fc.pre(!all.some(carriesToken));
          const s = sections(g).map((x) => ({ ...x, body: [...x.body] }));
          for (const [i, j, lines] of injections) {
            const target = s[i % s.length]!;
            target.body.splice(j % (target.body.length + 1), 0, ...lines);
          }
          const expected = expectedOf(g);
          let got: HostReport | undefined;
          if (rejects(() => (got = parseReport(text(s), TOKEN)))) {
            rejected++;
            return;
          }
          accepted++;
          expect(values(got!)).toEqual(values(expected));
          // Lists whose lines are plain paths or `file:line` may take a hostile line of exactly that
          // shape as one of their own (their sources are root-only), never as a value elsewhere.
          const hostile = new Set(all.flatMap((l) => l.split("\n")));
          for (const p of got!.managed) expect(expected.managed.includes(p) || hostile.has(p)).toBe(true);
          for (const src of got!.sysctlSources) expect(expected.sysctlSources.includes(src) || hostile.has(src)).toBe(true);
          for (const [o, paths] of Object.entries(got!.owners)) {
            for (const p of paths) expect((expected.owners[o] ?? []).includes(p) || hostile.has(`${o}:${p}`)).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
    // Both outcomes occur (free-text bodies such as did/step take anything; value bodies reject).
    expect(accepted).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
  });

  test("property: hostile text before the first section is ignored", () => {
    fc.assert(
      fc.property(genuineArb, fc.array(hostileLine, { maxLength: 5 }), (g, lines) => {
        fc.pre(!lines.some(carriesToken));
        expect(parseReport(lines.join("\n") + "\n" + text(sections(g)), TOKEN)).toEqual(expectedOf(g));
      }),
      { numRuns: 200 },
    );
  });

  test("property: a unix socket row whose name is hostile text (newlines, @@, other tokens, NUL, numbers) is rejected or changes nothing", () => {
    fc.assert(
      fc.property(
        genuineArb.filter((g) => g.unix.length > 0),
        fc.nat(),
        fc.oneof(
          hostileLine,
          fc.tuple(hostileLine, hostileLine).map(([a, b]) => `${a}\n${b}`),
          fc.constantFrom(
            "/run/php/PHP8.2-FPM.SOCK",
            "/RUN/php/app.sock",
            "/run/php/php8.2-fpm.sock.evil",
            "/run/php/php8.2-fpm.soc",
            "/evil 1 * 0\nu_str LISTEN 0 65535 /evil",
            `/evil 1 * 0\n@@${OTHER} sysctl net.core.somaxconn\n65535`,
            "/evil\u0000/run/php/app.sock",
            "@abstract",
            "",
          ),
        ),
        u32,
        (g, which, name, backlog) => {
          const [path] = g.unix[which % g.unix.length]!;
          // ss -x src PATH prints only sockets whose name matches PATH (case aside): a name that holds
          // PATH itself plus more lines could not be printed in this section.
          fc.pre(!name.includes(path) && !carriesToken(name));
          const s = sections(g);
          const section = s.find((x) => x.head === `unix ${path}`)!;
          section.body.push(`u_str LISTEN 0      ${backlog}   ${name} 31337            * 0`);
          let got: HostReport | undefined;
          if (rejects(() => (got = parseReport(text(s), TOKEN)))) return;
          expect(values(got!)).toEqual(values(expectedOf(g)));
        },
      ),
      { numRuns: 500 },
    );
  });

  test("a forged section without the token (or with another run's token) is ignored before the report, and rejected inside a value's body", () => {
    const genuine = [at("sysctl net.core.somaxconn"), "4096", at("end")];
    for (const forged of ["@@ sysctl net.core.somaxconn", `@@${OTHER} sysctl net.core.somaxconn`, `@@${TOKEN.slice(0, 31)} sysctl net.core.somaxconn`]) {
      // Before the first section: not part of the report.
      expect(parseReport([forged, "65535", ...genuine].join("\n"), TOKEN).sysctls).toEqual({ "net.core.somaxconn": 4096 });
      // Inside a body: the body no longer has its shape.
      expect(rejects(() => parseReport([at("sysctl net.core.somaxconn"), "4096", forged, "65535", at("end")].join("\n"), TOKEN))).toBe(true);
      expect(rejects(() => parseReport([at("sysctl net.core.somaxconn"), forged, "65535", at("end")].join("\n"), TOKEN))).toBe(true);
      // Inside free text (a service's output): text, not a section.
      const r = parseReport([at("did nginx reload"), forged, "65535", ...genuine].join("\n"), TOKEN);
      expect(r.sysctls).toEqual({ "net.core.somaxconn": 4096 });
      expect(r.did[0]!.output).toBe(`${forged}\n65535`);
    }
  });

  test("nothing after the end: neither a section nor a line", () => {
    expect(rejects(() => parseReport([at("end"), at("sysctl net.core.somaxconn"), "1"].join("\n"), TOKEN))).toBe(true);
    expect(rejects(() => parseReport([at("end"), "trailing"].join("\n"), TOKEN))).toBe(true);
    expect(parseReport([at("end"), "", ""].join("\n"), TOKEN).complete).toBe(true);
  });

  test("unknown sections and malformed section arguments are rejected", () => {
    for (const bad of [
      [at("sysctls net.core.somaxconn"), "1"],
      [at("sysctl net/core/somaxconn"), "1"],
      [at("sysctl somaxconn"), "1"],
      [at("file etc/x"), "!absent"],
      [at("file /etc/a b"), "!absent"],
      [at("unix /run/a;b"), ""],
      [at("unit nginx;reboot"), "active"],
      [at("did nginx"), ""],
      [at("did nginx stop"), ""],
      [at("")],
    ]) {
      expect(rejects(() => parseReport(bad.join("\n"), TOKEN))).toBe(true);
    }
  });
});

describe("numbers, rows and contents are checked", () => {
  test.each([
    ["sysctl above 2^32-1", [at("sysctl net.core.somaxconn"), "4294967296"]],
    ["sysctl of 20 digits", [at("sysctl net.core.somaxconn"), "99999999999999999999"]],
    ["negative sysctl", [at("sysctl net.core.somaxconn"), "-1"]],
    ["sysctl in hex", [at("sysctl net.core.somaxconn"), "0x10"]],
    ["sysctl with a space", [at("sysctl net.core.somaxconn"), "1 2"]],
    ["two sysctl lines", [at("sysctl net.core.somaxconn"), "1", "2"]],
    ["no sysctl line", [at("sysctl net.core.somaxconn")]],
    ["tcp port above 65535", [at("tcp 65536")]],
    ["tcp port not a number", [at("tcp http")]],
    ["unix Send-Q above 2^32-1", [at("unix /run/a.sock"), "u_str LISTEN 0 4294967296 /run/a.sock 1 * 0"]],
    ["unix inode above 2^32-1", [at("unix /run/a.sock"), "u_str LISTEN 0 1 /run/a.sock 4294967296 * 0"]],
    ["tcp Send-Q above 2^32-1", [at("tcp 80"), "LISTEN 0 4294967296 0.0.0.0:80 0.0.0.0:* ino:1"]],
    ["tcp inode of 11 digits", [at("tcp 80"), "LISTEN 0 1 0.0.0.0:80 0.0.0.0:* ino:12345678901"]],
    ["generation of 11 digits", [at("generation"), "12345678901"]],
    ["before value above 2^32-1", [at("before"), "sysctl.net.core.somaxconn:4294967296"]],
    ["applied value above 2^32-1", [at("applied"), "applied.net.core.somaxconn:4294967296"]],
    ["unit state unknown to systemd", [at("unit nginx"), "hacked"]],
    ["journal neither open nor none", [at("journal"), "closed"]],
    ["container type with a space", [at("container"), "docker evil"]],
  ])("%s: rejected", (_name, lines) => {
    expect(rejects(() => parseReport((lines as string[]).join("\n"), TOKEN))).toBe(true);
  });

  test("numbers at the edges of their ranges are taken", () => {
    const r = parseReport(
      [
        at("sysctl net.core.somaxconn"),
        "4294967295",
        at("tcp 65535"),
        "LISTEN 0 4294967295 0.0.0.0:65535 0.0.0.0:* ino:9999999999",
        at("tcp 0"),
        at("generation"),
        "9999999999",
      ].join("\n"),
      TOKEN,
    );
    expect(r.sysctls["net.core.somaxconn"]).toBe(MAX_U32);
    expect(r.sockets[0]).toMatchObject({ port: 65535, backlog: MAX_U32, inode: 9999999999 });
    expect(r.generation).toBe(9999999999);
  });

  test("a unix row of another path (case-only included) is left out; a row of another shape is rejected", () => {
    const ok = "u_str LISTEN 0 511 /run/php/app.sock 12 * 0";
    expect(parseReport([at("unix /run/php/app.sock"), ok].join("\n"), TOKEN).sockets).toHaveLength(1);
    for (const row of [
      "u_str LISTEN 0 511 /run/php/evil.sock 12 * 0",
      "u_str LISTEN 0 511 /run/php/APP.sock 12 * 0", // ss's `src` filter matches case-insensitively
      "u_str LISTEN 0 511 /run/php/app.sock.x 12 * 0",
    ]) {
      const r = parseReport([at("unix /run/php/app.sock"), ok, row].join("\n"), TOKEN);
      expect(r.sockets).toHaveLength(1);
      expect(r.sockets[0]).toMatchObject({ path: "/run/php/app.sock", backlog: 511 });
    }
    for (const row of [
      "u_str LISTEN 0 511 /run/php/app.sock 12 * 0 extra",
      "u_dgr UNCONN 0 0 /run/php/app.sock 12 * 0",
      "u_str ESTAB 0 0 /run/php/app.sock 12 * 0",
      "LISTEN 0 511 /run/php/app.sock 12 * 0",
    ]) {
      expect(rejects(() => parseReport([at("unix /run/php/app.sock"), ok, row].join("\n"), TOKEN))).toBe(true);
    }
  });

  test("a tcp row of another port (or not a listening row, or without its inode) is rejected", () => {
    const ok = "LISTEN 0 511 0.0.0.0:80 0.0.0.0:* ino:1";
    expect(parseReport([at("tcp 80"), ok].join("\n"), TOKEN).sockets).toHaveLength(1);
    for (const row of [
      "LISTEN 0 511 0.0.0.0:8080 0.0.0.0:* ino:2",
      "LISTEN 0 511 0.0.0.0:800 0.0.0.0:* ino:2",
      "LISTEN 0 511 [::]:81 [::]:* ino:2",
      "LISTEN 0 511 0.0.0.0:80 0.0.0.0:*",
      "LISTEN 0 511 0.0.0.0:80 0.0.0.0:* inode:2",
      "ESTAB 0 0 0.0.0.0:80 1.2.3.4:5555 ino:2",
      "LISTEN 0 511 evil.example:80 0.0.0.0:* ino:2",
      "LISTEN 0 511 80 0.0.0.0:* ino:2",
    ]) {
      expect(rejects(() => parseReport([at("tcp 80"), ok, row].join("\n"), TOKEN))).toBe(true);
    }
  });

  test("file content whose sha256 differs is rejected; so are a bad hash, non-base64 content and extra lines", () => {
    const content = "pm.max_children = 5\n";
    const b64 = Buffer.from(content).toString("base64");
    const good = [at("file /etc/x.conf"), sha(content), b64];
    expect(parseReport(good.join("\n"), TOKEN).contents).toEqual({ "/etc/x.conf": content });
    for (const bad of [
      [at("file /etc/x.conf"), sha("other"), b64],
      [at("file /etc/x.conf"), sha(content), Buffer.from("pm.max_children = 500\n").toString("base64")],
      [at("file /etc/x.conf"), sha(content).toUpperCase(), b64],
      [at("file /etc/x.conf"), sha(content).slice(1), b64],
      [at("file /etc/x.conf"), sha(content), "not base64!"],
      [at("file /etc/x.conf"), sha(content), b64, b64],
      [at("file /etc/x.conf"), "!absent", b64],
      [at("file /etc/x.conf")],
    ]) {
      expect(rejects(() => parseReport(bad.join("\n"), TOKEN))).toBe(true);
    }
  });

  // Low severity, noted for the lead (not fixed here): an empty file prints its sha256 and an empty
  // base64 line; report.ts drops empty lines before the `file` section is read, so a present empty
  // file gets a hash but no entry in `contents` (documented as "each managed file that is present and
  // at most 64 KiB"). converge.ts then treats it as unreadable ("\u0000"), which today leads to the
  // same action. `test.failing` until report.ts keeps the empty content.
  test("an empty file's content is reported (as the empty string)", () => {
    const r = parseReport([at("file /etc/x.conf"), sha(""), ""].join("\n"), TOKEN);
    expect(r.files["/etc/x.conf"]).toBe(sha(""));
    expect(r.contents["/etc/x.conf"]).toBe("");
  });
});

// ss's unix `src` filter is fnmatch(3) with FNM_CASEFOLD: a socket whose name differs from the
// profile's path only by case is printed too (one line: no newline passes the filter). The parser
// leaves that row out (see above): neither a forged value nor a report rejected by a local user.
const haveSs = spawnSync("ss", ["-V"]).status === 0 && spawnSync("python3", ["-V"]).status === 0;
(haveSs ? test : test.skip)("ss -x src PATH also prints a socket whose name differs only by case", () => {
  const dir = mkdtempSync(join(tmpdir(), "backlog-ss-"));
  try {
    const r = spawnSync(
      "python3",
      [
        "-c",
        [
          "import socket, subprocess, sys",
          "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1] + '/APP.sock'); s.listen(7)",
          "print(subprocess.run(['ss', '-H', '-l', '-n', '-x', 'src', sys.argv[1] + '/app.sock'], capture_output=True, text=True).stdout)",
        ].join("\n"),
        dir,
      ],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${dir}/APP.sock`);
    const section = [at(`unix ${dir}/app.sock`), r.stdout.trim()].join("\n");
    expect(parseReport(section, TOKEN).sockets).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("sysctl sources (issue #14)", () => {
  const tok = reportToken();
  const at = (s: string) => `@@${tok} ${s}`;
  it("parses the files (links with their targets) and the numbered lines that assign a key", () => {
    const r = parseReport(
      [
        at("sysctl-files"),
        "/etc/sysctl.d/99-sysctl.conf -> /etc/sysctl.conf",
        "/etc/sysctl.d/60-b.conf -> /dev/null",
        "/etc/sysctl.d/x.conf -> !unsafe",
        "/usr/lib/sysctl.d/50-pid-max.conf",
        "/etc/sysctl.conf",
        at("sysctl-lines"),
        "/etc/sysctl.d/99-sysctl.conf:69:net.core.somaxconn = 128",
        "/run/sysctl.d/zzz-x.conf:1: - net/core/somaxconn=77\t",
        "/etc/sysctl.conf:3:net.core.somaxconn = lots",
        at("end"),
      ].join("\n"),
      tok,
    );
    expect(r.sysctlFiles).toEqual([
      { path: "/etc/sysctl.d/99-sysctl.conf", target: "/etc/sysctl.conf" },
      { path: "/etc/sysctl.d/60-b.conf", target: "/dev/null" },
      { path: "/etc/sysctl.d/x.conf", target: "!unsafe" },
      { path: "/usr/lib/sysctl.d/50-pid-max.conf" },
      { path: "/etc/sysctl.conf" },
    ]);
    expect(r.sysctlLines).toEqual([
      { path: "/etc/sysctl.d/99-sysctl.conf", line: 69, key: "net.core.somaxconn", value: 128, text: "net.core.somaxconn = 128" },
      { path: "/run/sysctl.d/zzz-x.conf", line: 1, key: "net.core.somaxconn", value: 77, text: "- net/core/somaxconn=77" },
      { path: "/etc/sysctl.conf", line: 3, key: "net.core.somaxconn", value: null, text: "net.core.somaxconn = lots" },
    ]);
    expect(r.sysctlSources).toContain("/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 128");
  });
  it.each([
    ["sysctl-files", "/etc/passwd"],
    ["sysctl-files", "/etc/sysctl.d/a b.conf"],
    ["sysctl-files", "/etc/sysctl.d/a.conf -> relative"],
    ["sysctl-lines", "/etc/sysctl.d/a.conf:net.core.somaxconn = 1"],
    ["sysctl-lines", "/etc/sysctl.d/a.conf:0:net.core.somaxconn = 1"],
    ["sysctl-lines", "/etc/sysctl.d/a.conf:5:no assignment here"],
    ["sysctl-lines", "/etc/shadow:1:root = 1"],
    ["sysctl-lines", "/etc/sysctl.d/a.conf:5:net.core.somaxconn = 1\u0007"],
  ])("rejects a %s line %j", (section, l) => {
    expect(() => parseReport([at(section), l, at("end")].join("\n"), tok)).toThrow(section);
  });
});
