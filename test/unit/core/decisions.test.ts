/**
 * The SSH path and the standalone script take the same decisions (issues #11, #16). For each case
 * the same host is given to both: converge.ts `decide()` gets it as a probe report, and the
 * standalone script's decision shell (src/core/standalone.ts `decisionShell`, the text the
 * script carries) runs on it with /bin/sh in a sandbox: the service files as they were before the
 * apply and as the apply left them in a temp dir, the apply log's `retired` lines, and `ss` and
 * `systemctl` as PATH shims that print the case's sockets and unit states. Per service the action,
 * the reasons and the sockets to listen() again must be the same.
 */
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { decide, fileChangeNeed, hostOwnValues, managedKeys, phpSocketSettings } from "../../../src/core/converge";
import { backupName } from "../../../src/core/plan";
import { quote } from "../../../src/core/shell";
import type { HostReport } from "../../../src/core/report";
import { filesOf, probeReport as report, unixSocket as unix } from "../fixtures";
import { type BacklogProfile, type ProfileInput, defineProfile, kernelTargets } from "../../../src/core/profile";
import type { HostPaths } from "../../../src/core/render";
import { PHP_SOCKET_AWK, decisionShell, kernelVariables, standaloneScript } from "../../../src/core/standalone";
import { type ListeningSocket, compare, expectedValues, splitAddress } from "../../../src/core/verify";

jest.setTimeout(30_000);
const OWNER = "standalone";
const TOKEN = "0123456789abcdef0123456789abcdef";
const root = mkdtempSync(join(tmpdir(), "backlog-decisions-"));
const HOST = join(root, "host");
const STATE = join(root, "state");
const SHIM = join(root, "shim");
const PATHS: HostPaths = {
  sysctlDropIn: join(HOST, "sysctl.d", "zz-pulumi-backlog.conf"),
  phpFpmPoolDir: join(HOST, "pool.d"),
  nginxConf: join(HOST, "nginx", "pulumi-backlog.conf"),
};
const POOL = join(PATHS.phpFpmPoolDir, "www.conf");
const NGINX = PATHS.nginxConf;
const DROP_IN = PATHS.sysctlDropIn;
const SOCK = "/run/php/php8.2-fpm.sock";

afterAll(() => rmSync(root, { recursive: true, force: true }));

// `ss` and `systemctl` as the decision shell calls them, answering from the case's files.
mkdirSync(SHIM, { recursive: true });
writeFileSync(
  join(SHIM, "ss"),
  [
    "#!/bin/sh",
    "# ss -H -l -n -x src PATH | ss -H -l -n -t -e 'sport = :PORT': the rows of that path or port, in order.",
    'for a in "$@"; do last=$a; done',
    'case " $* " in *" -x "*) f=$SHIM/unix; k=$last;; *) f=$SHIM/tcp; k=${last#sport = :};; esac',
    '[ -f "$f" ] || exit 0',
    'awk -v k="$k" \'$1 == k { sub(/^[^ ]* /, ""); print }\' "$f"',
    "",
  ].join("\n"),
);
writeFileSync(
  join(SHIM, "systemctl"),
  ["#!/bin/sh", '[ "$1" = is-active ] || exit 1', 'if [ -f "$SHIM/unit.$2" ]; then cat "$SHIM/unit.$2"; else echo inactive; exit 3; fi', ""].join("\n"),
);
chmodSync(join(SHIM, "ss"), 0o755);
chmodSync(join(SHIM, "systemctl"), 0o755);

function sh(script: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("/bin/sh", ["-c", script], {
    encoding: "utf8",
    env: { PATH: `${SHIM}:/usr/bin:/bin`, SHIM, LC_ALL: "C" },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const INPUT: ProfileInput = {
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: SOCK }],
  listeners: [{ listen: 8080, pool: "www" }],
};
const profile = defineProfile(INPUT);
const withServerName = defineProfile({ ...INPUT, listeners: [{ listen: 8080, pool: "www", serverName: "example.com" }] });
const twoPools = defineProfile({ ...INPUT, pools: [...INPUT.pools!, { name: "api", listen: "/run/php/api.sock" }] });
const kernelOnly = defineProfile({ name: "web", backlog: 8192 });
/** TCP pool, an IPv6 listener, a wildcard port that two sockets answer. */
const fleet = defineProfile({
  name: "fleet",
  backlog: 16384,
  pools: [
    { name: "www", listen: SOCK },
    { name: "api", listen: "127.0.0.1:9001", backlog: 2048 },
  ],
  listeners: [
    { listen: 8080, pool: "www", defaultServer: true },
    { listen: "[::]:8081", pool: "api", backlog: 1024 },
  ],
});

const tcp = (backlog: number, inode = 222, local = "0.0.0.0:8080"): ListeningSocket => {
  const { host, port } = splitAddress(local);
  return { kind: "tcp", netid: null, recvQ: 0, backlog, local, host, port, path: null, inode };
};

/** What a deploy of `p` wrote (rendered for a host whose own somaxconn was 4096). */
function wantedFiles(p: BacklogProfile = profile): Record<string, string> {
  const d = decide(p, report(), { owner: OWNER, paths: PATHS });
  return Object.fromEntries(d.plan.files.map((f) => [f.path, f.content]));
}

/** A host on which `p` was deployed and took effect; `files` replaces some files' contents (null: absent). */
function converged(over: Partial<HostReport> = {}, files: Record<string, string | null> = {}, p: BacklogProfile = profile): HostReport {
  const wanted = wantedFiles(p);
  const units: Record<string, string> = {};
  if (p.pools.length > 0) units["php8.2-fpm"] = "active";
  if (p.listeners.length > 0) units.nginx = "active";
  return report({
    sysctls: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    ...filesOf({ ...wanted, ...files }),
    sockets: [unix(8192), tcp(8192)],
    units,
    before: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    applied: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    managed: Object.keys(wanted),
    owners: { [OWNER]: Object.keys(wanted) },
    generation: 3,
    ...over,
  });
}

/** Per service: action, reason, and the `inode=backlog` pairs listened again (relisten, reload). */
interface Decision {
  action: string;
  reason: string;
  relisten: string[];
}

/** The SSH path: converge.ts decide() on the probe report. */
function viaConverge(p: BacklogProfile, r: HostReport): Record<"php" | "nginx", Decision> {
  const d = decide(p, r, { owner: OWNER, paths: PATHS });
  const of = (unit: string): Decision => {
    const s = d.plan.services.find((x) => x.unit === unit);
    return { action: s?.action ?? "none", reason: s?.reason ?? "", relisten: (s?.relisten ?? []).map((x) => `${x.inode}=${x.backlog}`) };
  };
  return { php: of("php8.2-fpm"), nginx: of("nginx") };
}

/** Sockets as ss prints them, in the probe's order (unix paths sorted, then TCP ports sorted). */
function probeOrder(sockets: readonly ListeningSocket[]): ListeningSocket[] {
  const key = (s: ListeningSocket) => (s.kind === "unix" ? `0 ${s.path}` : `1 ${String(s.port).padStart(5, "0")}`);
  return [...sockets].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** Writes `files` (null: removes). */
function place(files: Record<string, string | null>): void {
  for (const [path, content] of Object.entries(files)) {
    if (content === null) rmSync(path, { force: true });
    else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
    }
  }
}

interface Sandbox {
  /** The files on disk before the apply (default: the report's contents; null: absent). */
  disk?: Record<string, string | null>;
  /** An earlier run's open journal: the copies its rollback gives back (null: the file was absent). */
  journal?: Record<string, string | null>;
}

/**
 * The standalone path: the decision shell of the script for `p`, run on the same host. Before the
 * apply: the files on disk (and the journal) as the case says, `pb_save_before`; the apply: every
 * service file written as rendered, each retired file given back (its original was absent) and
 * named in the log; after it: `pb_decide`.
 */
function viaScript(p: BacklogProfile, r: HostReport, box: Sandbox = {}): Record<"php" | "nginx", Decision> & { retired: string[] } {
  rmSync(HOST, { recursive: true, force: true });
  rmSync(STATE, { recursive: true, force: true });
  rmSync(join(root, "before"), { recursive: true, force: true });
  for (const f of ["unix", "tcp", "unit.php8.2-fpm", "unit.nginx"]) rmSync(join(SHIM, f), { force: true });
  mkdirSync(join(root, "before"));
  mkdirSync(STATE);
  const d = decide(p, r, { owner: OWNER, paths: PATHS });
  // The host before the apply.
  const disk = box.disk ?? Object.fromEntries(Object.keys(r.files).map((path) => [path, r.contents[path] ?? null]));
  place(disk);
  if (box.journal) {
    mkdirSync(join(STATE, "txn", "f"), { recursive: true });
    writeFileSync(join(STATE, "txn", "open"), "standalone\n");
    for (const [path, content] of Object.entries(box.journal)) {
      const b = backupName(path);
      writeFileSync(join(STATE, "txn", "f", `${b}.path`), path + "\n");
      if (content === null) writeFileSync(join(STATE, "txn", "f", `${b}.absent`), "");
      else writeFileSync(join(STATE, "txn", "f", `${b}.file`), content);
    }
  }
  const sockets = probeOrder(r.sockets);
  writeFileSync(
    join(SHIM, "unix"),
    sockets
      .filter((s) => s.kind === "unix")
      .map((s) => `${s.path} u_str LISTEN 0 ${s.backlog} ${s.path} ${s.inode} * 0\n`)
      .join(""),
  );
  writeFileSync(
    join(SHIM, "tcp"),
    sockets
      .filter((s) => s.kind === "tcp")
      .map(
        (s) =>
          `${s.port} LISTEN 0 ${s.backlog} ${s.local} ${s.local.startsWith("[") ? "[::]:*" : "0.0.0.0:*"} ino:${s.inode} sk:${s.inode}a cgroup:/system.slice/x.service <->\n`,
      )
      .join(""),
  );
  for (const [unit, state] of Object.entries(r.units)) writeFileSync(join(SHIM, `unit.${unit}`), state + "\n");
  const shell = decisionShell(p, { paths: PATHS });
  const kernel = kernelTargets(p, hostOwnValues(managedKeys(p), r))
    .map((t, i) => `${kernelVariables(i).want}=${t.value}`)
    .join("; ");
  const head = `set -u\nT=${TOKEN}; S=${STATE}; ${kernel}\n${shell}\n`;
  const before = sh(`${head}pb_save_before ${join(root, "before")}`);
  expect(before.stderr).toBe("");
  expect(before.code).toBe(0);
  // The apply.
  place(Object.fromEntries(d.plan.files.filter((f) => f.path !== DROP_IN).map((f) => [f.path, f.content])));
  place(Object.fromEntries((d.plan.retired ?? []).map((path) => [path, null])));
  const log = join(root, "apply.log");
  writeFileSync(
    log,
    [`@@${TOKEN} step lock`, ...[...(d.plan.retired ?? [])].reverse().map((path) => `@@${TOKEN} retired ${path}`), `@@${TOKEN} step test`, ""].join("\n"),
  );
  const out = sh(
    `${head}pb_decide ${join(root, "before")} ${log}\n` +
      `printf '%s\\n' "$pb_act_php" "$pb_why_php" "$pb_pairs_php" "$pb_act_nginx" "$pb_why_nginx" "$pb_pairs_nginx" "$pb_retired"`,
  );
  expect(out.stderr).toBe("");
  expect(out.code).toBe(0);
  const [pa, pw, pp, na, nw, np, ...retired] = out.stdout.split("\n");
  const pairs = (text = "") => text.split(" ").filter((x) => x !== "");
  return {
    php: { action: pa!, reason: pw!, relisten: pairs(pp) },
    nginx: { action: na!, reason: nw!, relisten: pairs(np) },
    retired: retired.filter((x) => x !== ""),
  };
}

describe("the standalone script decides as converge.ts decide() does", () => {
  const wanted = wantedFiles();
  const pool = wanted[POOL]!;
  const nginx = wanted[NGINX]!;
  const fleetSockets = (php: number, api: number, n8080: number, n8081: number) => [
    unix(php, 111),
    tcp(api, 333, "127.0.0.1:9001"),
    tcp(n8080, 222, "0.0.0.0:8080"),
    tcp(n8081, 444, "[::]:8081"),
  ];
  const fleetHost = (over: Partial<HostReport>) =>
    converged(
      {
        sysctls: { "net.core.somaxconn": 16384, "net.ipv4.tcp_max_syn_backlog": 16384 },
        applied: { "net.core.somaxconn": 16384, "net.ipv4.tcp_max_syn_backlog": 16384 },
        sockets: fleetSockets(16384, 2048, 16384, 1024),
        ...over,
      },
      {},
      fleet,
    );

  const cases: [string, BacklogProfile, () => HostReport, Record<"php" | "nginx", string>, Sandbox?][] = [
    ["nothing", profile, () => converged(), { php: "none", nginx: "none" }],
    [
      "backlog-only pool change",
      profile,
      () => converged({ sockets: [unix(4096), tcp(8192)] }, { [POOL]: pool.replace("listen.backlog = 8192", "listen.backlog = 4096") }),
      { php: "relisten", nginx: "none" },
    ],
    [
      "somaxconn-only change, sockets capped by the old value",
      profile,
      () =>
        converged(
          { sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 }, applied: {}, sockets: [unix(4096), tcp(4096)] },
          { [DROP_IN]: "net.core.somaxconn = 4096\n" },
        ),
      { php: "relisten", nginx: "relisten" },
    ],
    ["pm.* change", profile, () => converged({}, { [POOL]: pool.replace("pm.max_children = 5", "pm.max_children = 10") }), { php: "reload", nginx: "none" }],
    [
      "pm.* and backlog change with the socket old: reload, then relisten",
      profile,
      () =>
        converged(
          { sockets: [unix(4096), tcp(8192)] },
          { [POOL]: pool.replace("pm.max_children = 5", "pm.max_children = 10").replace("listen.backlog = 8192", "listen.backlog = 4096") },
        ),
      { php: "reload", nginx: "none" },
    ],
    [
      "listen.mode change",
      profile,
      () => converged({}, { [POOL]: pool.replace("listen.mode = 0660", "listen.mode = 0666") }),
      { php: "restart", nginx: "none" },
    ],
    [
      "listen address change",
      profile,
      () => converged({}, { [POOL]: pool.replace(`listen = ${SOCK}`, "listen = /run/php/old.sock") }),
      { php: "restart", nginx: "none" },
    ],
    [
      "new pool (no file, no socket yet)",
      twoPools,
      () => converged({}, { [join(PATHS.phpFpmPoolDir, "api.conf")]: null }, twoPools),
      { php: "reload", nginx: "none" },
    ],
    [
      "retired pool",
      profile,
      () => converged({ owners: { [OWNER]: [...Object.keys(wanted), join(PATHS.phpFpmPoolDir, "old.conf")] } }),
      { php: "restart", nginx: "none" },
    ],
    ["retired pool and nginx file (the profile keeps only kernel values)", kernelOnly, () => converged({ units: {} }), { php: "restart", nginx: "reload" }],
    [
      "nginx backlog= only",
      profile,
      () => converged({ sockets: [unix(8192), tcp(4096)] }, { [NGINX]: nginx.replace("backlog=8192", "backlog=4096") }),
      { php: "none", nginx: "relisten" },
    ],
    ["nginx server_name change", withServerName, () => converged({}, { [NGINX]: nginx }, withServerName), { php: "none", nginx: "reload" }],
    ["nginx file new", profile, () => converged({}, { [NGINX]: null }), { php: "none", nginx: "reload" }],
    [
      "nginx file new, its socket not bound yet: reload",
      profile,
      () => converged({ sockets: [unix(8192)] }, { [NGINX]: null }),
      { php: "none", nginx: "reload" },
    ],
    ["nginx file right, its socket missing: restart", profile, () => converged({ sockets: [unix(8192)] }), { php: "none", nginx: "restart" }],
    [
      "the host's pool leaves php-fpm's default mode out: reload, not restart",
      profile,
      () => converged({}, { [POOL]: pool.replace("listen.mode = 0660\n", "") }),
      { php: "reload", nginx: "none" },
    ],
    ["missing socket", profile, () => converged({ sockets: [tcp(8192)] }), { php: "restart", nginx: "none" }],
    ["failed unit", profile, () => converged({ units: { "php8.2-fpm": "failed", nginx: "active" } }), { php: "restart", nginx: "none" }],
    [
      "inactive unit and no socket: both reasons",
      profile,
      () => converged({ units: { "php8.2-fpm": "active", nginx: "inactive" }, sockets: [unix(8192)] }),
      { php: "none", nginx: "restart" },
    ],
    ["a unit reloading counts as running", profile, () => converged({ units: { "php8.2-fpm": "active", nginx: "reloading" } }), { php: "none", nginx: "none" }],
    [
      "relisten and restart needed at once: restart",
      profile,
      () => converged({ sockets: [unix(4096), tcp(8192)] }, { [POOL]: pool.replace("listen.mode = 0660", "listen.mode = 0666") }),
      { php: "restart", nginx: "none" },
    ],
    ["a drifted socket alone (files right): relisten", profile, () => converged({ sockets: [unix(8192), tcp(511)] }), { php: "none", nginx: "relisten" }],
    [
      "TCP pool and IPv6 listener, somaxconn lowered by hand and php-fpm restarted",
      fleet,
      () => fleetHost({ sysctls: { "net.core.somaxconn": 128, "net.ipv4.tcp_max_syn_backlog": 16384 }, sockets: fleetSockets(128, 128, 16384, 1024) }),
      { php: "relisten", nginx: "none" },
    ],
    [
      "one of two sockets on a wildcard port differs: only that one is listened again",
      fleet,
      () => fleetHost({ sockets: [...fleetSockets(16384, 2048, 16384, 1024), tcp(511, 555, "*:8080")] }),
      { php: "none", nginx: "relisten" },
    ],
    [
      "an earlier run cut short: the file its rollback gives back counts",
      profile,
      () => converged({ journalOpen: true, sockets: [unix(4096), tcp(8192)] }, { [POOL]: pool.replace("listen.backlog = 8192", "listen.backlog = 4096") }),
      { php: "relisten", nginx: "none" },
      { disk: { ...wanted, [DROP_IN]: null }, journal: { [POOL]: pool.replace("listen.backlog = 8192", "listen.backlog = 4096") } },
    ],
    [
      "an earlier run cut short had created the pool",
      twoPools,
      () => converged({ journalOpen: true }, { [join(PATHS.phpFpmPoolDir, "api.conf")]: null }, twoPools),
      { php: "reload", nginx: "none" },
      { disk: { ...wantedFiles(twoPools), [DROP_IN]: null }, journal: { [join(PATHS.phpFpmPoolDir, "api.conf")]: null } },
    ],
  ];

  // One argument per case: jest takes a test function with more parameters than the row has for one awaiting done().
  test.each(cases.map((c) => [c[0], c] as const))("%s", (_name, [, p, host, actions, box]) => {
    const r = host();
    const ssh = viaConverge(p, r);
    const standalone = viaScript(p, r, box);
    // The case is what its name says ...
    expect({ php: ssh.php.action, nginx: ssh.nginx.action }).toEqual(actions);
    // ... and both paths agree: action, reasons (converge.ts's words) and the sockets listened again.
    expect({ php: standalone.php, nginx: standalone.nginx }).toEqual(ssh);
    expect(standalone.retired).toEqual(decide(p, r, { owner: OWNER, paths: PATHS }).plan.retired);
  });

  test("the relisten pairs carry the sockets' inodes and the expected backlogs", () => {
    const r = fleetHost({ sysctls: { "net.core.somaxconn": 128, "net.ipv4.tcp_max_syn_backlog": 16384 }, sockets: fleetSockets(128, 128, 16384, 1024) });
    const s = viaScript(fleet, r);
    expect(s.php.relisten).toEqual(["111=16384", "333=2048"]);
    expect(s.php.reason).toBe(
      "php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock): 128 \u2192 16384; php-fpm pool api listen.backlog (127.0.0.1:9001): 128 \u2192 2048",
    );
  });

  test("the decision shell is the text the script carries", () => {
    for (const p of [profile, fleet, kernelOnly, twoPools]) {
      expect(standaloneScript(p, { paths: PATHS })).toContain(decisionShell(p, { paths: PATHS }));
    }
  });
});

describe("the verification table, run on the same sandbox, is verify.ts compare()'s", () => {
  test.each<[string, BacklogProfile, Record<string, number>, ListeningSocket[]]>([
    ["all right", profile, { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 }, [unix(8192), tcp(8192)]],
    ["stale socket, missing socket", profile, { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 }, [unix(4096)]],
    [
      "truncated by somaxconn, larger backlog, kernel value low",
      fleet,
      { "net.core.somaxconn": 128, "net.ipv4.tcp_max_syn_backlog": 100 },
      [unix(128, 111), tcp(4096, 333, "127.0.0.1:9001"), tcp(16384, 222, "0.0.0.0:8080"), tcp(1024, 444, "[::]:8081"), tcp(511, 555, "*:8080")],
    ],
  ])("%s", (_name, p, sysctls, sockets) => {
    rmSync(join(SHIM, "tcp"), { force: true });
    const ordered = probeOrder(sockets);
    writeFileSync(
      join(SHIM, "unix"),
      ordered
        .filter((s) => s.kind === "unix")
        .map((s) => `${s.path} u_str LISTEN 0 ${s.backlog} ${s.path} ${s.inode} * 0\n`)
        .join(""),
    );
    writeFileSync(
      join(SHIM, "tcp"),
      ordered
        .filter((s) => s.kind === "tcp")
        .map((s) => `${s.port} LISTEN 0 ${s.backlog} ${s.local} 0.0.0.0:* ino:${s.inode} <->\n`)
        .join(""),
    );
    const own = { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 };
    const kernel = kernelTargets(p, own)
      .map((t, i) => `${kernelVariables(i).want}=${t.value}`)
      .join("; ");
    const fake = Object.entries(sysctls)
      .map(([k, v]) => `  */${k.split(".").pop()}) printf '%s 1' ${v};;`)
      .join("\n");
    const r = sh(
      `set -u\nT=${TOKEN}; S=${STATE}; ${kernel}\n${decisionShell(p, { paths: PATHS })}\n` +
        `pb_sysctl() {\n  case $1 in\n${fake}\n  esac\n}\n` +
        `pb_socks=$(pb_ss); pb_list=''; pb_sx=${sysctls["net.core.somaxconn"]}; pb_total=0; pb_bad=0\npb_head\npb_rows\necho "$pb_bad/$pb_total"`,
    );
    expect(r.stderr).toBe("");
    const rows = compare(expectedValues(p, own), { sysctls, sockets });
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^SETTING +EXPECTED +EFFECTIVE +RESULT$/);
    const table = lines.slice(1, -2);
    const fromScript: { setting: string; expected: number; effective: number | null; ok: boolean; hint: string }[] = [];
    for (const l of table) {
      if (l.startsWith("    hint: ")) {
        fromScript[fromScript.length - 1]!.hint = l.slice(10);
        continue;
      }
      const m = /^(.*?) +(\d+) +(\S+) +(ok|MISMATCH)$/.exec(l)!;
      fromScript.push({ setting: m[1]!, expected: Number(m[2]), effective: m[3] === "missing" ? null : Number(m[3]), ok: m[4] === "ok", hint: "" });
    }
    expect(fromScript).toEqual(rows.map(({ setting, expected, effective, ok, hint }) => ({ setting, expected, effective, ok, hint })));
    expect(lines[lines.length - 2]).toBe(`${rows.filter((x) => !x.ok).length}/${rows.length}`);
  });
});

describe("one file's change: pb_file_need against converge.ts fileChangeNeed", () => {
  const base = "[www]\nlisten = /run/a.sock\nlisten.backlog = 511\nlisten.mode = 0660\npm.max_children = 5\n";
  const nginxBase = "server {\n  listen 0.0.0.0:80 default_server backlog=511;\n  server_name a;\n}\n";

  type Item = ["php-fpm" | "nginx", string | undefined, string];

  /** Each [service, host (undefined: absent), wanted] through pb_file_need and through fileChangeNeed, on the same path. */
  function agree(items: Item[]): void {
    const dir = mkdtempSync(join(root, "files-"));
    const lines: string[] = [];
    mkdirSync(join(dir, "before"));
    const paths = items.map(([service, host, wanted], i) => {
      const path = join(dir, `${i}.conf`);
      writeFileSync(path, wanted);
      if (host === undefined) writeFileSync(join(dir, "before", `${i}.absent`), "");
      else writeFileSync(join(dir, "before", String(i)), host);
      const s = service === "php-fpm" ? "php" : "nginx";
      lines.push(
        "pb_rank_php=0; pb_why_php=''; pb_rank_nginx=0; pb_why_nginx=''",
        `pb_file_need ${join(dir, "before")} ${s} ${i} ${path}`,
        `printf '%s\\n%s\\n' "$pb_rank_${s}" "$pb_why_${s}"`,
      );
      return path;
    });
    const r = sh(`set -u\n${decisionShell(profile, { paths: PATHS })}\n${lines.join("\n")}`);
    rmSync(dir, { recursive: true, force: true });
    expect(r.stderr).toBe("");
    const out = r.stdout.split("\n");
    const shell = items.map((_, i) => ({ action: ["none", "relisten", "reload", "restart"][Number(out[2 * i])], reason: out[2 * i + 1] }));
    // decide() asks fileChangeNeed only about a file whose content differs.
    const ts = items.map(([service, host, wanted], i) => (host === wanted ? { action: "none", reason: "" } : fileChangeNeed(service, paths[i]!, host, wanted)));
    expect(shell).toEqual(ts);
  }

  test("converge.test.ts's cases, and the edges of the patterns", () => {
    agree([
      ["php-fpm", base, base.replace("511", "8192")],
      ["php-fpm", base.replace("listen.backlog = 511\n", ""), base],
      ["php-fpm", base, base.replace("pm.max_children = 5", "pm.max_children = 6")],
      ["php-fpm", base, base.replace("/run/a.sock", "/run/b.sock")],
      ["php-fpm", base, base + "listen.owner = www-data\n"],
      ["php-fpm", base, base + "listen.acl_users = nginx\n"],
      ["php-fpm", undefined, base],
      ["php-fpm", base, base],
      ["php-fpm", base, base.replace("listen.backlog = 511", "  listen.backlog=4096")],
      ["php-fpm", base, base.replace("listen.backlog = 511", "\tlisten.backlog\t= 4096")],
      ["php-fpm", base, base + "listen.backlogs = 1\n"],
      ["php-fpm", base, base.replace("listen.mode = 0660", "  listen.mode=0666")],
      ["php-fpm", base, base.replace("listen.mode = 0660", "; listen.mode = 0666")],
      ["php-fpm", base, base + "; a comment\n"],
      ["php-fpm", base.replace(/\n/g, "\r\n"), base.replace(/\n/g, "\r\n").replace("511", "1024")],
      ["nginx", nginxBase, nginxBase.replace("backlog=511", "backlog=8192")],
      ["nginx", nginxBase, nginxBase.replace("server_name a", "server_name b")],
      ["nginx", nginxBase, nginxBase.replace("0.0.0.0:80", "0.0.0.0:8080")],
      ["nginx", nginxBase, nginxBase.replace(" backlog=511", "")],
      ["nginx", undefined, nginxBase],
      ["nginx", nginxBase, nginxBase],
    ]);
  });

  test("random edits of a pool file and an nginx file (property)", () => {
    const phpEdits: [string, (t: string) => string][] = [
      ["backlog", (t) => t.replace(/listen\.backlog = \d+/, "listen.backlog = 4096")],
      ["backlog line gone", (t) => t.replace(/listen\.backlog = \d+\n/, "")],
      ["pm", (t) => t.replace("pm.max_children = 5", "pm.max_children = 9")],
      ["mode", (t) => t.replace("listen.mode = 0660", "listen.mode = 0600")],
      ["owner added", (t) => t + "listen.owner = nginx\n"],
      ["group added", (t) => t + "listen.group = nginx\n"],
      ["address", (t) => t.replace("/run/a.sock", "127.0.0.1:9000")],
      ["extra", (t) => t + "php_admin_value[memory_limit] = 64M\n"],
      ["spaces", (t) => t.replace("listen.backlog = ", "  listen.backlog  =  ")],
    ];
    const nginxEdits: [string, (t: string) => string][] = [
      ["backlog", (t) => t.replace(/backlog=\d+/, "backlog=2048")],
      ["no backlog", (t) => t.replace(/ backlog=\d+/, "")],
      ["server_name", (t) => t.replace("server_name a", "server_name c")],
      ["port", (t) => t.replace(":80 ", ":81 ")],
    ];
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.subarray(phpEdits.map((_, i) => i)),
        fc.subarray(phpEdits.map((_, i) => i)),
        fc.subarray(nginxEdits.map((_, i) => i)),
        (absent, before, after, nginxAfter) => {
          const apply = (t: string, idx: number[], edits: [string, (t: string) => string][]) => idx.reduce((acc, i) => edits[i]![1](acc), t);
          agree([
            ["php-fpm", absent ? undefined : apply(base, before, phpEdits), apply(base, after, phpEdits)],
            ["nginx", apply(nginxBase, nginxAfter, nginxEdits), nginxBase],
          ]);
        },
      ),
      { numRuns: 60 },
    );
  }, 30_000);

  test("a pool's socket as php-fpm reads it: the awk program prints what phpSocketSettings() returns", () => {
    const files = [
      base,
      "[www]\nlisten = /run/a.sock\nlisten.owner = www-data\nlisten.group = www-data\n;listen.mode = 0660\n",
      "[www]\r\nLISTEN = /run/a.sock\r\nListen.Mode = 660\r\n",
      '[www]\n  listen\t=\t"/run/a.sock"  \nlisten.mode = "0666"\nlisten.mode =\n',
      '[www]\nlisten = /a\nlisten = /b\nlisten.mode = 000\nlisten.mode=0o660\nlisten.acl_users = nginx,www-data\nlisten.acl_groups=""\n',
      "[a]\nlisten = /a\nlisten.mode = 0600\n[b]\nlisten = /b\n",
      '[www]\nlistenx = 1\n; listen = /c\nlisten.backlog = 5\nlisten.allowed_clients = 127.0.0.1\nlisten.owner = "\n',
      "",
    ];
    const dir = mkdtempSync(join(root, "socket-"));
    const lines = files.map((f, i) => {
      writeFileSync(join(dir, String(i)), f);
      return `awk ${quote(PHP_SOCKET_AWK)} < ${join(dir, String(i))}; echo @@`;
    });
    const r = sh(lines.join("\n"));
    rmSync(dir, { recursive: true, force: true });
    expect(r.stderr).toBe("");
    const shell = r.stdout
      .split("@@\n")
      .slice(0, files.length)
      .map((x) => x.replace(/\n$/, ""));
    expect(shell).toEqual(files.map((f) => phpSocketSettings(f)));
    // What php-fpm does with them: a default spelled out, or written in another case or with quotes, is the same socket.
    expect(phpSocketSettings(files[1]!)).toBe(phpSocketSettings(`${files[1]}listen.mode = 0660\n`));
    expect(phpSocketSettings(files[2]!)).toBe(phpSocketSettings("[www]\nlisten = /run/a.sock\nlisten.mode = 0660\n"));
    expect(phpSocketSettings(files[3]!)).toBe(phpSocketSettings("[www]\nlisten = /run/a.sock\n"));
    expect(phpSocketSettings(files[4]!).split("\n").slice(0, 4)).toEqual(["/b", "", "", "0o660"]);
    expect(phpSocketSettings(files[5]!)).not.toBe(phpSocketSettings("[a]\nlisten = /a\nlisten.mode = 0660\n[b]\nlisten = /b\n"));
  });

  test("a file that could not be copied before counts as changed beyond its backlog", () => {
    const dir = mkdtempSync(join(root, "unread-"));
    writeFileSync(join(dir, "pool.conf"), base);
    const r = sh(
      `set -u\n${decisionShell(profile, { paths: PATHS })}\npb_rank_php=0; pb_why_php=''; pb_rank_nginx=0; pb_why_nginx=''\n` +
        `pb_file_need ${dir} php missing ${dir}/pool.conf; pb_file_need ${dir} nginx missing ${dir}/pool.conf\nprintf '%s %s\\n' "$pb_rank_php" "$pb_rank_nginx"`,
    );
    expect(r.stdout.trim()).toBe("3 2");
    expect(existsSync(join(dir, "missing.a"))).toBe(false);
    expect(readFileSync(join(dir, "pool.conf"), "utf8")).toBe(base);
  });
});
