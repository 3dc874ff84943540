/**
 * The standalone script (src/core/standalone.ts), the one the user data and the SSM document
 * carry: its drop-in with run-time values fills back to render()'s output, its awk socket matcher
 * agrees with verify.ts's parseSs/socketMatches, and the script parses as POSIX sh. Whole runs
 * against a real host are in test/integration/aws.test.ts.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fc from "fast-check";
import { readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { type ApplyPlan, RUN_DIR, STATE_DIR, applyScript, backupName, contentHash, reportToken, scriptLibrary, sysctlListing } from "../../../src/core/plan";
import { type SysctlSources, conflictAdvice, formatConflict, sysctlConflicts } from "../../../src/core/sysctlSources";
import { parseReport } from "../../../src/core/report";
import { type ProfileInput, SOMAXCONN, TCP_MAX_SYN_BACKLOG, defineProfile, kernelTargets } from "../../../src/core/profile";
import { render, renderSysctlDropIn } from "../../../src/core/render";
import {
  SOCKET_AWK,
  STANDALONE_EXIT,
  dropInTemplate,
  fillRuntimeValues,
  conflictShell,
  kernelVariables,
  socketSelectorEnv,
  standaloneScript,
} from "../../../src/core/standalone";
import { quote } from "../../../src/core/shell";
import { ssmDocumentContent } from "../../../src/core/aws/ssmDocument";
import { type ListeningSocket, type SocketSelector, compare, expectedValues, parseSs, socketMatches } from "../../../src/core/verify";
import { EXACT, FLEET, KERNEL_ONLY, WEB, tempDir } from "../fixtures";

const INCIDENT: ProfileInput = {
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
};

function sh(script: string, env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe("the script", () => {
  test.each([
    ["incident", INCIDENT],
    ["web fixture", WEB],
    ["kernel only", KERNEL_ONLY],
    ["exact", EXACT],
  ])("%s: #!/bin/sh, parses as POSIX sh, holds no {{ (dash and bash --posix)", (_, input) => {
    const script = standaloneScript(input as ProfileInput);
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(script).not.toContain("{{");
    for (const shell of ["sh", "bash --posix"]) {
      const r = sh(`${shell} -n <<'EOF_SCRIPT'\n${script}\nEOF_SCRIPT`);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
    }
  });

  test("is deterministic and carries every rendered file", () => {
    const a = standaloneScript(WEB);
    expect(standaloneScript(WEB)).toBe(a);
    for (const f of render(defineProfile(WEB))) {
      // applyScript's pb_put line names the path and the sha256 of the content it writes.
      expect(a).toContain(`pb_put ${quote(f.path)} `);
      if (f.kind !== "sysctl") expect(a).toContain(` ${contentHash(f.content)} <<'PULUMI_BACKLOG_B64'`);
      if (f.kind !== "sysctl") {
        // applyScript's here-document: the content base64-encoded in 76-character lines.
        expect(a).toContain(Buffer.from(f.content).toString("base64").slice(0, 76));
      }
    }
  });

  test("applies through applyScript: the services' actions are decided on the host inside the transaction; retired files decided on the host", () => {
    const script = standaloneScript(INCIDENT);
    expect(script).toContain("if ! out=$(timeout -k 5 90 php-fpm8.2 -t 2>&1); then pb_fail 10 'test php8.2-fpm'");
    expect(script).toContain("if ! out=$(timeout -k 5 90 nginx -t 2>&1); then pb_fail 10 'test nginx'");
    expect(script).toContain("sysctl -p /etc/sysctl.d/zz-pulumi-backlog.conf");
    // ApplyPlan.retireStale: the files this owner managed last time and the profile no longer has go back.
    expect(script).toContain(`pb_at "retired $p"`);
    // Every restart, reload and relisten runs inside the apply (the subshell), after the decision and
    // before the commit, so that a failed one rolls everything back (pb_fail 12).
    const apply = script.slice(script.indexOf("\n(\npb_main() {\n"), script.indexOf(') > "$pb_state/apply.log" 2>&1'));
    const outside = script.replace(apply, "");
    expect(outside).not.toMatch(/pb_decide "\$pb_before"|pb_service |pb_tell [a-z]/);
    const decide = apply.indexOf('pb_decide "$pb_before" "$pb_state/apply.log"');
    expect(decide).toBeGreaterThan(apply.indexOf("sysctl -p /etc/sysctl.d/zz-pulumi-backlog.conf"));
    for (const [unit, sv] of [
      ["php8.2-fpm", "php"],
      ["nginx", "nginx"],
    ]) {
      const step = apply.indexOf(`pb_step 'service ${unit}'\ncase $pb_act_${sv} in\nrestart)`);
      expect(step).toBeGreaterThan(decide);
      expect(step).toBeLessThan(apply.indexOf("pb_step commit"));
      expect(apply).toContain(`pb_service restart ${unit} 90`);
      expect(apply).toContain(`pb_service reload ${unit} 90`);
      expect(apply).toContain(`pb_relisten ${unit} $pb_pairs_${sv} 2>&1`);
      // The sockets' backlogs before the relisten, for a rollback.
      expect(apply).toContain(`pb_note "$S/txn/s/"${unit} "${unit} $pb_olds_${sv}"`);
      expect(apply).toContain(`[ "$pb_act_${sv}" = none ] || pb_tell ${unit} "$pb_act_${sv} ($pb_why_${sv})"`);
    }
  });

  test("plan.ts's shell library is loaded once, before the apply, and the apply is applyScript's without it", () => {
    const script = standaloneScript(INCIDENT);
    const library = scriptLibrary(STATE_DIR, "standalone", { token: /^T=([0-9a-f]{32})$/m.exec(script)![1]! }).join("\n");
    expect(script.split(library)).toHaveLength(2);
    expect(script.match(/^PB_RELISTEN_PL=/gm)).toHaveLength(1);
    expect(script.indexOf(library)).toBeLessThan(script.indexOf("pb_decide() {"));
    expect(script.indexOf("pb_decide() {")).toBeLessThan(script.indexOf("\n(\npb_main() {\n"));
  });

  test("options: services, paths and state name reach the script; bad ones are refused", () => {
    const script = standaloneScript(INCIDENT, {
      services: { phpFpmUnit: "php-fpm", phpFpmBinary: "php-fpm" },
      paths: { phpFpmPoolDir: "/etc/php-fpm.d" },
      stateName: "al2023",
    });
    expect(script).toContain(`pb_step 'service php-fpm'\ncase $pb_act_php in`);
    expect(script).toContain("pb_unit_need php php-fpm\n");
    expect(script).toContain("pb_put /etc/php-fpm.d/www.conf ");
    // One state directory per host, shared with the SSH path; the state name is this script's owner name there.
    expect(script).toContain(`pb_state=${STATE_DIR}\n`);
    expect(script).toContain(`S=${STATE_DIR}\n`);
    expect(script).toContain("OWNER=al2023\n");
    expect(script).toContain(`R=${RUN_DIR}\n`);
    expect(() => standaloneScript(INCIDENT, { stateName: "../etc" })).toThrow(/stateName/);
    expect(() => standaloneScript(INCIDENT, { services: { nginxUnit: "nginx; reboot" } })).toThrow(/services.nginxUnit/);
    expect(() => standaloneScript({ ...INCIDENT, backlog: 0 })).toThrow(/backlog/);
  });

  // COMPONENT BUG (reported to the lead, not fixed here): 0.1's standalone script kept its state in
  // /var/lib/pulumi-backlog/<stateName>/ (orig/, applied.*, kept.*). standalone.ts now builds its
  // ApplyPlan on the shared /var/lib/pulumi-backlog without `legacyName: stateName`, so applyScript
  // never moves that state into place (plan.ts recoverLines emits the move only for a legacyName, as
  // backlogHost.ts passes one). On an instance set up by 0.1 (its SSM association runs again after the
  // upgrade) the first new run keeps the files and kernel values 0.1 set as the "originals", and a
  // later restore gives back 0.1's settings instead of the host's own. `test.failing` until fixed.
  test("an instance set up by 0.1's standalone script has that state moved into the shared layout", () => {
    expect(standaloneScript(INCIDENT)).toContain(`L="$S/"standalone; if [ ! -d "$S/orig" ] && [ -d "$L/orig" ]`);
    expect(standaloneScript(INCIDENT, { stateName: "al2023" })).toContain(`L="$S/"al2023;`);
  });

  test("one verification row per expected value, with verify.ts's settings and hints", () => {
    const profile = defineProfile(WEB);
    const script = standaloneScript(profile);
    const rows = script.split("\n").filter((l) => l.startsWith("  pb_row "));
    const expected = expectedValues(profile);
    expect(rows).toHaveLength(expected.length);
    expected.forEach((e, i) => {
      expect(rows[i]).toContain(quote(e.setting));
    });
    // The stale-socket hint of a pool, word for word from compare().
    const pool = expected.find((e) => e.target.kind === "socket" && e.target.service === "php-fpm")!;
    const [row] = compare([{ ...pool, comparison: "equal" }], {
      sysctls: { [SOMAXCONN]: pool.expected },
      sockets: [
        { kind: "unix", netid: "u_str", recvQ: 0, backlog: pool.expected - 1, local: "/run/php/app.sock", host: null, port: null, path: "/run/php/app.sock" },
      ],
    });
    expect(script).toContain(quote(row!.hint));
  });

  test("exit codes are documented in the header", () => {
    const header = standaloneScript(INCIDENT).split("\n").slice(0, 8).join("\n");
    expect(header).toContain(`${STANDALONE_EXIT.mismatch} MISMATCH`);
    expect(header).toContain(`${STANDALONE_EXIT.ok} verified`);
  });
});

describe("the drop-in with run-time values", () => {
  test("exact mode has no placeholders: the drop-in is render()'s", () => {
    const profile = defineProfile(EXACT);
    const t = dropInTemplate(profile);
    expect(t.runtimeValues).toEqual({});
    expect(t.content).toBe(renderSysctlDropIn(profile));
  });

  test("atLeast: for any host values the filled drop-in is render(profile, { hostBefore: own })", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.option(fc.integer({ min: 1, max: 2147483647 }), { nil: undefined }),
        fc.integer({ min: 0, max: 2147483647 }),
        fc.integer({ min: 0, max: 2147483647 }),
        (backlog, syn, ownSomaxconn, ownSyn) => {
          const profile = defineProfile({ name: "p", backlog, ...(syn !== undefined && syn >= backlog ? { tcpMaxSynBacklog: syn } : {}) });
          const own = { [SOMAXCONN]: ownSomaxconn, [TCP_MAX_SYN_BACKLOG]: ownSyn };
          const t = dropInTemplate(profile);
          const env: Record<string, string> = {};
          kernelTargets(profile, own).forEach((target, i) => {
            env[kernelVariables(i).want] = String(target.value);
            env[kernelVariables(i).kept] = target.keptHostValue ? String(target.hostBefore) : "";
          });
          expect(fillRuntimeValues(t.content, t.runtimeValues, env)).toBe(renderSysctlDropIn(profile, { hostBefore: own }));
        },
      ),
      { numRuns: 200 },
    );
  });

  test("plan.ts fills them with sed as it writes the file (run for real with /bin/sh under set -u, as the standalone script runs it)", () => {
    const dir = tempDir("standalone");
    const owner = userInfo().username;
    const group = execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();
    const profile = defineProfile({ name: "p", backlog: 4096 });
    const t = dropInTemplate(profile);
    const path = join(dir, "zz.conf");
    const token = reportToken();
    const plan: ApplyPlan = {
      stateDir: join(dir, "state"),
      owner: "standalone",
      files: [{ path, content: t.content, mode: "0644", owner, group, runtimeValues: t.runtimeValues }],
      sysctlKeys: [],
      services: [],
      sockets: { unixPaths: [], tcpPorts: [] },
    };
    const script = applyScript(plan, { token, runDir: join(dir, "run") });
    const cases: [Record<string, string>, Record<string, number>][] = [
      [
        { pb_want_0: "4096", pb_kept_0: "", pb_want_1: "4096", pb_kept_1: "" },
        { [SOMAXCONN]: 128, [TCP_MAX_SYN_BACKLOG]: 256 },
      ],
      [
        { pb_want_0: "9000", pb_kept_0: "9000", pb_want_1: "4096", pb_kept_1: "" },
        { [SOMAXCONN]: 9000, [TCP_MAX_SYN_BACKLOG]: 1 },
      ],
      [
        { pb_want_0: "65535", pb_kept_0: "65535", pb_want_1: "2147483647", pb_kept_1: "2147483647" },
        { [SOMAXCONN]: 65535, [TCP_MAX_SYN_BACKLOG]: 2147483647 },
      ],
    ];
    for (const [vars, own] of cases) {
      const assign = Object.entries(vars)
        .map(([k, v]) => `${k}=${quote(v)}`)
        .join("; ");
      const r = sh(`set -u\n${assign}\n(\n${script}\n)`);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const report = parseReport(r.stdout, token);
      expect(report.failure).toBeUndefined();
      expect(report.complete).toBe(true);
      expect(readFileSync(path, "utf8")).toBe(renderSysctlDropIn(profile, { hostBefore: own }));
    }
    // Anything but a whole number stops the write and puts the files back.
    const before = readFileSync(path, "utf8");
    const r = sh(`set -u\npb_want_0='1; reboot'; pb_kept_0=''; pb_want_1=1; pb_kept_1=''\n(\n${script}\n)`);
    expect(r.code).toBe(13);
    const report = parseReport(r.stdout, token);
    expect(report.failure?.step).toBe(`write ${path}`);
    expect(report.failure?.output).toBe("pb_want_0 is not a whole number");
    expect(report.rolledBack).toBe(true);
    expect(readFileSync(path, "utf8")).toBe(before);
  });

  test("plan.ts refuses malformed run-time values", () => {
    const base = { path: "/tmp/x.conf", content: "a = @V@\n", mode: "0644", owner: "root", group: "root" };
    const plan = (runtimeValues: Record<string, string>): ApplyPlan => ({
      stateDir: "/tmp/s",
      owner: "standalone",
      files: [{ ...base, runtimeValues }],
      sysctlKeys: [],
      services: [],
      sockets: { unixPaths: [], tcpPorts: [] },
    });
    const opts = { token: reportToken() };
    expect(() => applyScript(plan({ "@V@": "x; rm" }), opts)).toThrow(/not a shell variable name/);
    expect(() => applyScript(plan({ V: "x" }), opts)).toThrow(/must look like @NAME@/);
    expect(() => applyScript(plan({ "@W@": "x" }), opts)).toThrow(/does not occur/);
    // Without run-time values, the file is written byte for byte (no sed expressions on the pb_put line).
    expect(applyScript({ ...plan({}), files: [base] }, opts)).toContain(
      `pb_put /tmp/x.conf ${backupName("/tmp/x.conf")} 0644 root:root ${contentHash(base.content)} <<'PULUMI_BACKLOG_B64'`,
    );
  });
});

describe("the awk socket matcher agrees with verify.ts", () => {
  const hosts4 = ["0.0.0.0", "127.0.0.1", "10.0.0.5", "*"];
  const hosts6 = ["::", "::1", "fe80::1%lo", "2001:db8::5", "::ffff:127.0.0.1"];
  const ports = [80, 8080, 9000];
  const paths = ["/run/php/app.sock", "/run/php/php8.2-fpm.sock", "@abstract", "/run/with space.sock"];
  const tcpRow = fc
    .record({
      state: fc.constantFrom("LISTEN", "LISTEN", "LISTEN", "ESTAB", "UNCONN"),
      host: fc.constantFrom(...hosts4, ...hosts6),
      port: fc.constantFrom(...ports),
      backlog: fc.constantFrom(128, 511, 1024, 4096),
      netid: fc.boolean(),
      process: fc.boolean(),
    })
    .map((r) => {
      const bare = r.host.split("%")[0] ?? r.host;
      const local =
        r.host === "*" || !bare.includes(":") ? `${r.host}:${r.port}` : `[${r.host.replace(/%.*/, "")}]${r.host.includes("%") ? "%lo" : ""}:${r.port}`;
      return `${r.netid ? "tcp   " : ""}${r.state} 0      ${r.backlog}   ${local}   ${r.host.includes(":") ? "[::]:*" : "0.0.0.0:*"}${r.process ? '   users:(("nginx",pid=1,fd=6))' : ""}`;
    });
  const unixRow = fc
    .record({
      state: fc.constantFrom("LISTEN", "LISTEN", "ESTAB"),
      path: fc.constantFrom(...paths),
      backlog: fc.constantFrom(8, 511, 4096),
      netid: fc.constantFrom("u_str", "u_seq", ""),
    })
    .map((r) => `${r.netid ? r.netid + " " : ""}${r.state} 0      ${r.backlog}   ${r.path} 12345 * 0`);
  const selector: fc.Arbitrary<SocketSelector> = fc.oneof(
    fc.constantFrom(...paths).map((path): SocketSelector => ({ kind: "unix", path })),
    fc
      .record({
        host: fc.constantFrom<string | null>(null, "0.0.0.0", "127.0.0.1", "10.0.0.5", "::", "::1", "2001:db8::5", "fe80::1"),
        port: fc.constantFrom(...ports),
        dualStack: fc.boolean(),
      })
      .map(
        ({ host, port, dualStack }): SocketSelector => ({
          kind: "tcp",
          endpoint: { family: host === null ? "any" : host.includes(":") ? "ipv6" : "ipv4", host, port },
          dualStack,
        }),
      ),
  );

  function viaTs(output: string, s: SocketSelector): string {
    const found = parseSs(output)
      .filter((x: ListeningSocket) => socketMatches(s, x))
      .map((x) => x.backlog);
    if (found.length === 0) return "missing";
    return `${Math.min(...found)} ${found.every((b) => b === found[0]) ? 1 : 0}`;
  }

  function viaAwk(output: string, s: SocketSelector): string {
    const r = sh(`printf '%s\\n' "$SS" | ${socketSelectorEnv(s)} awk ${quote(SOCKET_AWK)}`, { SS: output });
    expect(r.stderr).toBe("");
    return r.stdout.trim();
  }

  test("on real ss output of a lab host", () => {
    const output = [
      "LISTEN 0      511          0.0.0.0:80        0.0.0.0:*",
      "LISTEN 0      128          0.0.0.0:22        0.0.0.0:*",
      "LISTEN 0      511             [::]:80           [::]:*",
      "u_str LISTEN 0      4096                         /run/systemd/private 606032 * 0",
      "u_str LISTEN 0      4096                     /run/php/php8.2-fpm.sock 606842 * 0",
    ].join("\n");
    const php: SocketSelector = { kind: "unix", path: "/run/php/php8.2-fpm.sock" };
    const nginx: SocketSelector = { kind: "tcp", endpoint: { family: "ipv4", host: "0.0.0.0", port: 80 }, dualStack: false };
    const v6: SocketSelector = { kind: "tcp", endpoint: { family: "ipv6", host: "::", port: 80 }, dualStack: false };
    expect(viaAwk(output, php)).toBe("4096 1");
    expect(viaAwk(output, nginx)).toBe("511 1");
    expect(viaAwk(output, v6)).toBe("511 1");
    expect(viaAwk(output, { kind: "unix", path: "/run/php/none.sock" })).toBe("missing");
    for (const s of [php, nginx, v6]) expect(viaAwk(output, s)).toBe(viaTs(output, s));
  });

  test("list mode (-v list=1): each matching socket's inode and Send-Q, as the probe's report reads them", () => {
    const path = "/run/php/php8.2-fpm.sock";
    const unixOut = `u_str LISTEN 0      4096   ${path} 606842 * 0\nu_str LISTEN 0 511 ${path} 606900 * 0`;
    const tcpOut = [
      "LISTEN 0      511          0.0.0.0:8080        0.0.0.0:*    ino:1234 sk:5 cgroup:/system.slice/nginx.service <->",
      "LISTEN 0      1024            [::]:8080           [::]:*    ino:1240 sk:6 cgroup:/system.slice/nginx.service v6only:1 <->",
    ].join("\n");
    const token = reportToken();
    const report = parseReport(`@@${token} unix ${path}\n${unixOut}\n@@${token} tcp 8080\n${tcpOut}\n@@${token} end\n`, token);
    const selectors: SocketSelector[] = [
      { kind: "unix", path },
      { kind: "tcp", endpoint: { family: "ipv4", host: "0.0.0.0", port: 8080 }, dualStack: false },
      { kind: "tcp", endpoint: { family: "ipv6", host: "::", port: 8080 }, dualStack: true },
      { kind: "tcp", endpoint: { family: "any", host: null, port: 8080 }, dualStack: false },
      { kind: "unix", path: "/run/php/none.sock" },
    ];
    const list = (output: string, s: SocketSelector) => {
      const r = sh(`printf '%s\\n' "$SS" | ${socketSelectorEnv(s)} awk -v list=1 ${quote(SOCKET_AWK)}`, { SS: output });
      expect(r.stderr).toBe("");
      return r.stdout.split("\n").filter((l) => l !== "");
    };
    for (const s of selectors) {
      const want = report.sockets.filter((x) => socketMatches(s, x)).map((x) => `${x.inode} ${x.backlog}`);
      expect(list(`${unixOut}\n${tcpOut}`, s)).toEqual(want);
    }
    expect(list(`${unixOut}\n${tcpOut}`, selectors[2]!)).toEqual(["1234 511", "1240 1024"]);
    // Without -e a TCP row has no inode: "-".
    expect(list("LISTEN 0 511 0.0.0.0:8080 0.0.0.0:*", selectors[1]!)).toEqual(["- 511"]);
  });

  test("on generated ss output (property)", () => {
    const seen = { missing: 0, one: 0, differing: 0 };
    fc.assert(
      fc.property(fc.array(fc.oneof(tcpRow, unixRow), { maxLength: 8 }), selector, (lines, s) => {
        const output = lines.join("\n");
        const ts = viaTs(output, s);
        expect(viaAwk(output, s)).toBe(ts);
        seen[ts === "missing" ? "missing" : ts.endsWith(" 1") ? "one" : "differing"]++;
      }),
      { numRuns: 200 },
    );
    // The generator reaches every outcome, not only "missing".
    expect(seen.one).toBeGreaterThan(10);
    expect(seen.differing).toBeGreaterThan(0);
    // fast-check runs the awk program per case: seconds on a loaded machine.
  }, 30_000);
});

describe("sysctl conflicts (issue #14): the SSH path's model, run on the host", () => {
  const DROP_IN = "/etc/sysctl.d/zz-pulumi-backlog.conf";
  // Debian 12 with the classic advice in /etc/sysctl.conf and a later-sorted drop-in of the host's own.
  const SOURCES: SysctlSources = {
    files: [
      { path: "/etc/sysctl.d/99-sysctl.conf", target: "/etc/sysctl.conf" },
      { path: DROP_IN },
      { path: "/etc/sysctl.d/zzzz-local.conf" },
      { path: "/etc/sysctl.conf" },
    ],
    lines: [
      { path: "/etc/sysctl.d/99-sysctl.conf", line: 69, key: SOMAXCONN, value: 128, text: "net.core.somaxconn = 128" },
      { path: DROP_IN, line: 9, key: SOMAXCONN, value: 8192, text: "net.core.somaxconn = 8192" },
      { path: "/etc/sysctl.d/zzzz-local.conf", line: 2, key: TCP_MAX_SYN_BACKLOG, value: 100, text: "net.ipv4.tcp_max_syn_backlog = 100" },
      { path: "/etc/sysctl.conf", line: 69, key: SOMAXCONN, value: 128, text: "net.core.somaxconn = 128" },
    ],
  };
  const LISTING = [
    "@files",
    "/etc/sysctl.d/99-sysctl.conf -> /etc/sysctl.conf",
    DROP_IN,
    "/etc/sysctl.d/zzzz-local.conf",
    "/etc/sysctl.conf",
    "@lines",
    ...SOURCES.lines.map((l) => `${l.path}:${l.line}:${l.text}`),
    "",
  ].join("\n");

  /** The script's conflict functions (conflictShell) with the host's listing replaced by LISTING, run with /bin/sh. */
  function runConflictPart(mode: "report" | "neutralize", body: string): { code: number; stdout: string; stderr: string } {
    const functions = conflictShell(INCIDENT, { conflicts: mode });
    const listing = sysctlListing([SOMAXCONN, TCP_MAX_SYN_BACKLOG])!;
    const from = `{ echo @files; ${listing.files}; echo @lines; ${listing.lines}; }`;
    expect(functions).toContain(from);
    const dir = tempDir("conflicts");
    writeFileSync(join(dir, "listing"), LISTING);
    const script = standaloneScript(INCIDENT, { conflicts: mode });
    const format = /^pb_out\(\) \{ .*\}$/m.exec(script)![0];
    return sh(
      [
        "pb_say() { printf 'pulumi-backlog: %s\\n' \"$*\"; }",
        'pb_tell() { printf \'pulumi-backlog: %s: %s\\n\' "$1" "$2" >&3; }',
        'pb_read() { pb_r=$(cat "$1" 2>/dev/null) || return 1; printf \'%s\' "$pb_r"; }',
        format,
        functions.replace(from, `cat ${quote(join(dir, "listing"))}`),
        `pb_wantspec=${quote(`${SOMAXCONN}=8192=equal ${TCP_MAX_SYN_BACKLOG}=8192=equal`)}`,
        body,
      ].join("\n"),
    );
  }

  const wanted = { [SOMAXCONN]: { value: 8192 }, [TCP_MAX_SYN_BACKLOG]: { value: 8192 } };

  test("mode report: one line per conflicting file:line, formatConflict's sentence and the SSH path's advice", () => {
    const conflicts = sysctlConflicts(SOURCES, DROP_IN, wanted);
    expect(conflicts.map((c) => `${c.file}:${c.line}`)).toEqual(["/etc/sysctl.conf:69", "/etc/sysctl.d/zzzz-local.conf:2"]);
    const r = runConflictPart("report", "pb_conflict_lines pb_say_conflict");
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n").filter(Boolean)).toEqual(
      conflicts.map((c) => `pulumi-backlog: sysctl conflict: ${formatConflict(c)}. ${conflictAdvice("report")}`),
    );
  });

  test("mode neutralize: the list the apply comments out (file, line, text), each said on descriptor 3", () => {
    const r = runConflictPart("neutralize", "pb_neutral_list 3>&2");
    expect(r.stdout.split("\n").filter(Boolean)).toEqual([
      "/etc/sysctl.conf\t69\tnet.core.somaxconn = 128",
      "/etc/sysctl.d/zzzz-local.conf\t2\tnet.ipv4.tcp_max_syn_backlog = 100",
    ]);
    expect(r.stderr.split("\n").filter(Boolean)).toEqual(
      sysctlConflicts(SOURCES, DROP_IN, wanted).map((c) => `pulumi-backlog: sysctl conflict: ${formatConflict(c)}. ${conflictAdvice("neutralize")}`),
    );
  });

  test("verification rows of boot and sysctl --system: shown only when they differ, with compare()'s hint and the file:line; advisory in mode report", () => {
    const r = runConflictPart("report", 'pb_want_0=8192; pb_want_1=8192; pb_adv=0; pb_pbad=0; pb_prows\necho "adv=$pb_adv bad=$pb_pbad"');
    expect(r.stderr).toBe("");
    // Boot: the drop-in wins for somaxconn; zzzz-local.conf sorts after it and sets 100.
    expect(r.stdout).toMatch(/^net\.ipv4\.tcp_max_syn_backlog after boot \(systemd-sysctl\) +8192 +100 +advisory$/m);
    expect(r.stdout).toContain(
      'hint: systemd-sysctl would set 100 from /etc/sysctl.d/zzzz-local.conf:2, undoing the drop-in: set conflicts: "neutralize" to comment the line out, or change that file',
    );
    expect(r.stdout).toMatch(/^net\.core\.somaxconn after sysctl --system +8192 +128 +advisory$/m);
    expect(r.stdout).toContain("hint: sysctl --system would set 128 from /etc/sysctl.conf:69");
    expect(r.stdout).not.toMatch(/^net\.core\.somaxconn after boot/m);
    expect(r.stdout).toContain("adv=3 bad=0");
    // Mode neutralize: the same rows are mismatches.
    const n = runConflictPart("neutralize", 'pb_want_0=8192; pb_want_1=8192; pb_adv=0; pb_pbad=0; pb_prows\necho "adv=$pb_adv bad=$pb_pbad"');
    expect(n.stdout).toMatch(/^net\.core\.somaxconn after sysctl --system +8192 +128 +MISMATCH$/m);
    expect(n.stdout).toContain("adv=0 bad=3");
  });

  test("the SSM document of a two-pool profile still fits in 64 KB in both modes", () => {
    for (const conflicts of ["report", "neutralize"] as const) {
      const bytes = Buffer.byteLength(ssmDocumentContent(FLEET, { conflicts }), "utf8");
      // eslint-disable-next-line no-console
      console.log(`SSM document, profile "fleet", conflicts ${conflicts}: ${bytes} bytes`);
      expect(bytes).toBeLessThanOrEqual(65536);
    }
  });

  test("both modes parse as POSIX sh; only neutralize comments lines out; a bad mode is refused naming the field and the value", () => {
    for (const mode of ["report", "neutralize"] as const) {
      const script = standaloneScript(INCIDENT, { conflicts: mode });
      expect(script).not.toContain("{{");
      const r = sh(`sh -n <<'EOF_SCRIPT'\n${script}\nEOF_SCRIPT`);
      expect(r.stderr).toBe("");
      expect(script.includes("pb_step 'neutralize on host'")).toBe(mode === "neutralize");
      expect(script.includes("pb_conflict_lines pb_say_conflict")).toBe(mode === "report");
    }
    expect(() => standaloneScript(INCIDENT, { conflicts: "fix" as never })).toThrow(/^conflicts "fix": must be "report" or "neutralize"$/);
  });
});
