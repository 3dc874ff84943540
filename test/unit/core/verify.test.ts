import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { type Server, createServer } from "node:net";
import { join } from "node:path";
import { defineProfile } from "../../../src/core/profile";
import {
  type ExpectedValue,
  type ListeningSocket,
  type VerifyParseError,
  isVerifyParseError,
  compare,
  kernelBacklog,
  persistedExpectations,
  phpFpmDefaultBacklog,
  phpFpmListenArg,
  phpVersionOfUnit,
  expectedValues,
  formatMismatchTable,
  parseProcSysValue,
  parseSs,
  parseSysctlOutput,
  procSysPath,
  socketMatches,
  splitAddress,
} from "../../../src/core/verify";
import { EXACT, WEB, tempDir } from "../fixtures";

/** `ss -H -l -n -t` on a Debian 12 lab host after deploying WEB (iproute2 6.1 spacing). */
const SS_TCP = `LISTEN 0      1024         0.0.0.0:80        0.0.0.0:*
LISTEN 0      2048       127.0.0.1:9001      0.0.0.0:*
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*
LISTEN 0      512        127.0.0.1:8080      0.0.0.0:*
LISTEN 0      1024            [::]:80           [::]:*
LISTEN 0      128             [::]:22           [::]:*
LISTEN 0      511            [::1]:8443         [::]:*
LISTEN 0      511                *:9000            *:*
`;

/** `ss -H -l -n -x` on the same host: Netid column, datagram rows, abstract names. */
const SS_UNIX = `u_dgr UNCONN 0      0      /run/systemd/notify 13560            * 0
u_str LISTEN 0      4096   /run/systemd/private 13587            * 0
u_seq LISTEN 0      4096   /run/udev/control 13604            * 0
u_str LISTEN 3      1024   /run/php/app.sock 24316            * 0
u_str LISTEN 0      4096   @/org/kernel/linux/storage/multipathd 13623            * 0
u_str LISTEN 0      4096   /run/php/php8.2-fpm.sock 40211            * 0
u_dgr UNCONN 0      0      /run/systemd/journal/dev-log 13571            * 0
`;

describe("parseSs", () => {
  it("parses TCP rows: IPv4, IPv6, dual stack, zones", () => {
    const s = parseSs(SS_TCP);
    expect(s).toHaveLength(9);
    expect(s.map((x) => [x.host, x.port, x.backlog])).toEqual([
      ["0.0.0.0", 80, 1024],
      ["127.0.0.1", 9001, 2048],
      ["0.0.0.0", 22, 128],
      ["127.0.0.53", 53, 4096],
      ["127.0.0.1", 8080, 512],
      ["::", 80, 1024],
      ["::", 22, 128],
      ["::1", 8443, 511],
      ["*", 9000, 511],
    ]);
    expect(s[0]).toEqual({ kind: "tcp", netid: null, recvQ: 0, backlog: 1024, local: "0.0.0.0:80", host: "0.0.0.0", port: 80, path: null });
  });

  it("parses unix rows and skips UNCONN datagram rows", () => {
    const s = parseSs(SS_UNIX);
    expect(s.map((x) => [x.netid, x.path, x.recvQ, x.backlog])).toEqual([
      ["u_str", "/run/systemd/private", 0, 4096],
      ["u_seq", "/run/udev/control", 0, 4096],
      ["u_str", "/run/php/app.sock", 3, 1024],
      ["u_str", "@/org/kernel/linux/storage/multipathd", 0, 4096],
      ["u_str", "/run/php/php8.2-fpm.sock", 0, 4096],
    ]);
    expect(s.every((x) => x.kind === "unix" && x.host === null && x.port === null)).toBe(true);
  });

  it("parses concatenated output, a Netid column on TCP rows and a Process column", () => {
    const s = parseSs(`${SS_TCP}\n${SS_UNIX}tcp   LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=812,fd=8),("nginx",pid=811,fd=8))\n`);
    expect(s).toHaveLength(15);
    expect(s[14]).toMatchObject({ kind: "tcp", netid: "tcp", host: "0.0.0.0", port: 443, backlog: 511 });
  });

  it("parses a unix row without a Netid column and a path with a space", () => {
    expect(parseSs("LISTEN 0 128 /run/odd dir/x.sock 4242 * 0\n")).toEqual([
      { kind: "unix", netid: null, recvQ: 0, backlog: 128, local: "/run/odd dir/x.sock", host: null, port: null, path: "/run/odd dir/x.sock" },
    ]);
  });

  it("accepts the old bracketless IPv6 form and IPv4-mapped addresses", () => {
    expect(parseSs("LISTEN 0 128 :::80 :::*\nLISTEN 0 64 [::ffff:127.0.0.1]:9000 [::]:*\n").map((x) => [x.host, x.port])).toEqual([
      ["::", 80],
      ["::ffff:127.0.0.1", 9000],
    ]);
  });

  it("returns [] for empty output", () => {
    expect(parseSs("")).toEqual([]);
    expect(parseSs("\n\n")).toEqual([]);
  });

  it.each([
    ["a header line", "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n", /use ss -H/],
    ["a non-numeric Send-Q", "LISTEN 0 many 0.0.0.0:80 0.0.0.0:*\n", /Send-Q "many" is not a number/],
    ["a missing port", "LISTEN 0 128 0.0.0.0 0.0.0.0:*\n", /has no port/],
    ["a host name", "LISTEN 0 128 localhost:80 0.0.0.0:*\n", /not an IP address/],
    ["too few columns", "LISTEN 0 128\n", /too few columns/],
  ])("rejects %s with the line number", (_n, text, re) => {
    expect(() => parseSs(`LISTEN 0 1 0.0.0.0:1 0.0.0.0:*\n${text}`)).toThrow(re);
    try {
      parseSs(`LISTEN 0 1 0.0.0.0:1 0.0.0.0:*\n${text}`);
    } catch (e) {
      expect((e as VerifyParseError).line).toBe(2);
    }
  });

  it("splitAddress handles every form ss prints", () => {
    expect(splitAddress("[::1]:8080")).toEqual({ host: "::1", port: 8080 });
    expect(splitAddress("[fe80::1]%eth0:22")).toEqual({ host: "fe80::1", port: 22 });
    expect(splitAddress("*:80")).toEqual({ host: "*", port: 80 });
    expect(splitAddress("[2001:DB8:0:0::1]:443")).toEqual({ host: "2001:db8::1", port: 443 });
  });

  const live = existsSync("/usr/bin/ss") || existsSync("/bin/ss");
  (live ? it : it.skip)("agrees with the kernel: Send-Q of a real listening socket is min(backlog, somaxconn)", async () => {
    const somaxconn = parseProcSysValue(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    const path = join(tempDir("ss"), "t.sock");
    const listen = (server: Server, opts: object) => new Promise<void>((res) => server.listen(opts, () => res()));
    const unixServer = createServer();
    const tcpServer = createServer();
    await listen(unixServer, { path, backlog: 37 });
    await listen(tcpServer, { host: "127.0.0.1", port: 0, backlog: somaxconn + 100 });
    try {
      const port = (tcpServer.address() as { port: number }).port;
      const run = (args: string[]) => spawnSync("ss", args, { encoding: "utf8" }).stdout;
      const sockets = [...parseSs(run(["-H", "-l", "-n", "-x"])), ...parseSs(run(["-H", "-l", "-n", "-t"]))];
      expect(sockets.find((s) => s.path === path)?.backlog).toBe(37);
      expect(sockets.find((s) => s.port === port && s.host === "127.0.0.1")?.backlog).toBe(somaxconn);
    } finally {
      unixServer.close();
      tcpServer.close();
    }
  });
});

describe("/proc/sys and sysctl output", () => {
  it("parses one value", () => {
    expect(parseProcSysValue("4096\n")).toBe(4096);
    expect(parseProcSysValue(" 128 ")).toBe(128);
  });
  it.each(["", "abc", "4096 128", "1.5", "99999999999999999999"])("rejects %j", (t) => {
    expect(() => parseProcSysValue(t)).toThrow(/\/proc\/sys value/);
    try {
      parseProcSysValue(t);
    } catch (e) {
      expect(isVerifyParseError(e)).toBe(true);
    }
  });
  it("maps keys to /proc/sys paths", () => {
    expect(procSysPath("net.core.somaxconn")).toBe("/proc/sys/net/core/somaxconn");
    expect(procSysPath("net.ipv4.tcp_max_syn_backlog")).toBe("/proc/sys/net/ipv4/tcp_max_syn_backlog");
  });
  it("parses sysctl KEY... output, ignoring unmanaged keys", () => {
    expect(parseSysctlOutput("net.core.somaxconn = 4096\nnet.ipv4.tcp_max_syn_backlog = 512\nvm.swappiness = 60\n")).toEqual({
      "net.core.somaxconn": 4096,
      "net.ipv4.tcp_max_syn_backlog": 512,
    });
    expect(() => parseSysctlOutput("sysctl: cannot stat /proc/sys/net/core/somaxconn: No such file or directory\n")).toThrow(/line 1/);
  });
});

describe("expectedValues", () => {
  const p = defineProfile(WEB);

  it("lists sysctls, each pool socket and each nginx address once", () => {
    expect(expectedValues(p).map((e) => [e.setting, e.expected, e.comparison])).toEqual([
      ["net.core.somaxconn", 2048, "atLeast"],
      ["net.ipv4.tcp_max_syn_backlog", 2048, "atLeast"],
      ["php-fpm pool app listen.backlog (/run/php/app.sock)", 1024, "equal"],
      ["php-fpm pool api listen.backlog (127.0.0.1:9001)", 2048, "equal"],
      ["nginx listen 0.0.0.0:80 backlog", 1024, "equal"],
      ["nginx listen [::]:80 backlog", 1024, "equal"],
      ["nginx listen 127.0.0.1:8080 backlog", 512, "equal"],
    ]);
  });

  it("expects max(profile, host before) in atLeast mode", () => {
    const e = expectedValues(p, { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 1024 });
    expect(e.slice(0, 2).map((x) => [x.expected, x.comparison])).toEqual([
      [8192, "equal"],
      [2048, "equal"],
    ]);
  });

  it("expects the profile's values in exact mode, including the machine-global opt-in", () => {
    const e = expectedValues(defineProfile(EXACT), { "net.core.somaxconn": 65535 });
    expect(e.map((x) => [x.setting, x.expected, x.comparison])).toEqual([
      ["net.core.somaxconn", 8192, "equal"],
      ["net.ipv4.tcp_max_syn_backlog", 16384, "equal"],
      ["net.core.netdev_max_backlog", 5000, "equal"],
      ["php-fpm pool static-pool listen.backlog (9000)", 8192, "equal"],
      ["nginx listen [::1]:8443 backlog", 511, "equal"],
    ]);
  });
});

describe("compare and formatMismatchTable", () => {
  const p = defineProfile(WEB);
  const healthy = { sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 }, sockets: [...parseSs(SS_TCP), ...parseSs(SS_UNIX)] };

  it("all rows ok on a healthy host (atLeast: a larger host somaxconn is fine)", () => {
    const rows = compare(expectedValues(p), healthy);
    expect(rows.every((r) => r.ok)).toBe(true);
    expect(rows.map((r) => r.effective)).toEqual([4096, 2048, 1024, 2048, 1024, 1024, 512]);
    expect(formatMismatchTable([{ host: "web-1", rows }])).toBe("");
  });

  it("finds a stale socket, a missing socket, a lowered kernel value, and formats the table", () => {
    const stale = healthy.sockets.map((s): ListeningSocket => (s.path === "/run/php/app.sock" ? { ...s, backlog: 128 } : s));
    const broken = {
      sysctls: { "net.core.somaxconn": 4096 },
      sockets: stale.filter((s) => !(s.host === "::" && s.port === 80)),
    };
    const rows = compare(expectedValues(p, { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 1024 }), broken);
    const bad = rows.filter((r) => !r.ok);
    expect(bad.map((r) => [r.setting, r.expected, r.effective])).toEqual([
      ["net.ipv4.tcp_max_syn_backlog", 2048, null],
      ["php-fpm pool app listen.backlog (/run/php/app.sock)", 1024, 128],
      ["nginx listen [::]:80 backlog", 1024, null],
    ]);
    expect(bad[1]?.hint).toMatch(/stale socket.*restart php-fpm.*reload keeps the inherited socket/);
    expect(bad[2]?.hint).toMatch(/no listening socket/);
    const table = formatMismatchTable([
      { host: "web-1", rows },
      { host: "web-2", rows: compare(expectedValues(p), healthy) },
    ]);
    expect(table).toBe(
      "HOST   SETTING                                              EXPECTED  EFFECTIVE  HINT\n" +
        `web-1  net.ipv4.tcp_max_syn_backlog                         2048      missing    ${bad[0]?.hint}\n` +
        `web-1  php-fpm pool app listen.backlog (/run/php/app.sock)  1024      128        ${bad[1]?.hint}\n` +
        `web-1  nginx listen [::]:80 backlog                         1024      missing    ${bad[2]?.hint}\n`,
    );
  });

  it("explains truncation by a low somaxconn and shows >= for atLeast rows", () => {
    const low = {
      sysctls: { "net.core.somaxconn": 128, "net.ipv4.tcp_max_syn_backlog": 2048 },
      sockets: healthy.sockets.map((s): ListeningSocket => ({ ...s, backlog: Math.min(s.backlog, 128) })),
    };
    const rows = compare(expectedValues(p), low);
    expect(rows[0]).toMatchObject({ ok: false, effective: 128, comparison: "atLeast" });
    expect(rows[2]?.hint).toMatch(/truncated it to somaxconn 128/);
    expect(formatMismatchTable([{ host: "h", rows }])).toMatch(/^h +net\.core\.somaxconn +>=2048 +128 /m);
  });

  it("flags a larger socket backlog (old config still listening) and exact-mode drift", () => {
    const exact = defineProfile({ ...WEB, mode: "exact" });
    const rows = compare(expectedValues(exact), {
      sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
      sockets: healthy.sockets.map((s): ListeningSocket => (s.path === "/run/php/app.sock" ? { ...s, backlog: 4096 } : s)),
    });
    expect(rows[0]).toMatchObject({ ok: false, expected: 2048, effective: 4096 });
    expect(rows[0]?.hint).toMatch(/higher than the profile/);
    expect(rows[2]).toMatchObject({ ok: false, effective: 4096 });
    expect(rows[2]?.hint).toMatch(/older, larger backlog/);
  });

  it("matches wildcard and dual-stack sockets the way ss prints them", () => {
    const sel = (e: ExpectedValue) => (e.target.kind === "socket" ? e.target.socket : undefined);
    const exact = expectedValues(defineProfile(EXACT));
    const pool = sel(exact[3] as ExpectedValue);
    const sock = (local: string) => parseSs(`LISTEN 0 1 ${local} *:*\n`)[0] as ListeningSocket;
    expect(pool && socketMatches(pool, sock("*:9000"))).toBe(true);
    expect(pool && socketMatches(pool, sock("[::]:9000"))).toBe(true);
    expect(pool && socketMatches(pool, sock("127.0.0.1:9000"))).toBe(false);
    const nginxV4 = sel(expectedValues(p)[4] as ExpectedValue);
    expect(nginxV4 && socketMatches(nginxV4, sock("0.0.0.0:80"))).toBe(true);
    expect(nginxV4 && socketMatches(nginxV4, sock("[::]:80"))).toBe(false);
    const nginxV6 = sel(expectedValues(p)[5] as ExpectedValue);
    expect(nginxV6 && socketMatches(nginxV6, sock("[::]:80"))).toBe(true);
    expect(nginxV6 && socketMatches(nginxV6, sock("0.0.0.0:80"))).toBe(false);
    const tcpPool = sel(expectedValues(p)[3] as ExpectedValue);
    expect(tcpPool && socketMatches(tcpPool, sock("[::ffff:127.0.0.1]:9001"))).toBe(true);
  });

  it("uses the smallest Send-Q when several sockets match (reuseport) and flags the disagreement", () => {
    const dup = { ...healthy, sockets: [...healthy.sockets, ...parseSs("LISTEN 0 100 127.0.0.1:8080 0.0.0.0:*\n")] };
    const row = compare(expectedValues(p), dup).find((r) => r.setting.includes("8080"));
    expect(row).toMatchObject({ effective: 100, ok: false });
  });
});

describe("php-fpm backlog by version (php-src fpm_sockets.h / fpm_conf.c)", () => {
  const v = (s: string) => phpVersionOfUnit(`php${s}-fpm`);
  it("reads the version from the unit name", () => {
    expect(v("7.4")).toEqual({ major: 7, minor: 4 });
    expect(phpVersionOfUnit("php-fpm")).toBeUndefined();
  });
  it("7.4: default 511, an ondemand pool below 511 is raised to 511, others keep their value", () => {
    expect(phpFpmDefaultBacklog(v("7.4"))).toBe(511);
    expect(phpFpmListenArg(v("7.4"), undefined, "dynamic")).toBe(511);
    expect(phpFpmListenArg(v("7.4"), 128, "ondemand")).toBe(511);
    expect(phpFpmListenArg(v("7.4"), 128, "dynamic")).toBe(128);
    expect(phpFpmListenArg(v("7.4"), 1024, "ondemand")).toBe(1024);
    expect(kernelBacklog(phpFpmListenArg(v("7.4"), undefined, "dynamic"), 4096)).toBe(511);
  });
  it.each(["8.2", "8.4"])("%s: default -1 (somaxconn), no ondemand floor", (ver) => {
    expect(phpFpmDefaultBacklog(v(ver))).toBe(-1);
    expect(kernelBacklog(phpFpmListenArg(v(ver), undefined, "ondemand"), 4096)).toBe(4096);
    expect(phpFpmListenArg(v(ver), 128, "ondemand")).toBe(128);
  });
  it("8.1 still has the old rules; an unknown version follows the current sources", () => {
    expect(phpFpmListenArg(v("8.1"), 100, "ondemand")).toBe(511);
    expect(phpFpmListenArg(undefined, 100, "ondemand")).toBe(100);
  });
  it("the kernel caps what listen() got at somaxconn", () => {
    expect(kernelBacklog(511, 128)).toBe(128);
    expect(kernelBacklog(-1, 128)).toBe(128);
  });
});

describe("persisted rows", () => {
  it("one row per kernel key and tool; advisory when asked; compared against the value the tool would leave", () => {
    const rows = persistedExpectations(
      [{ setting: "net.core.somaxconn", target: { kind: "sysctl", key: "net.core.somaxconn" }, expected: 8192, comparison: "equal" }],
      true,
    );
    expect(rows.map((r) => r.setting)).toEqual(["net.core.somaxconn after boot (systemd-sysctl)", "net.core.somaxconn after sysctl --system"]);
    const [boot, system] = compare(rows, {
      sysctls: { "net.core.somaxconn": 8192 },
      sockets: [],
      persisted: {
        "systemd-sysctl": { "net.core.somaxconn": { value: 8192, source: "/etc/sysctl.d/zz-pulumi-backlog.conf:4" } },
        "sysctl --system": { "net.core.somaxconn": { value: 128, source: "/etc/sysctl.conf:69" } },
      },
    });
    expect(boot).toMatchObject({ ok: true, advisory: true });
    expect(system).toMatchObject({ ok: false, effective: 128, advisory: true });
    expect(system?.hint).toContain("sysctl --system would set 128 from /etc/sysctl.conf:69");
  });
});
