/** What a host needs, decided from a profile and a probe report (no host involved). */
import { bootOverrides, decide, hostOwnValues } from "../../components/converge";
import { HostReport, contentHash } from "../../components/plan";
import { defineProfile, render } from "../../components";

const profile = defineProfile({
  name: "web", backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
});

function report(over: Partial<HostReport> = {}): HostReport {
  return {
    sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    files: {}, sysctlSources: [], ssTcp: "", ssUnix: "", units: {}, before: {}, managed: [], applied: {}, own: {},
    container: "none", complete: true, ...over,
  };
}

/** The report of a host on which `decision` was applied and everything took effect. */
function converged(over: Partial<HostReport> = {}): HostReport {
  const d = decide(profile, report(), { stateName: "web1" });
  return report({
    sysctls: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    files: Object.fromEntries(d.plan.files.map((f) => [f.path, contentHash(f.content)])),
    ssTcp: "LISTEN 0 8192 0.0.0.0:8080 0.0.0.0:*",
    ssUnix: "u_str LISTEN 0 8192 /run/php/php8.2-fpm.sock 1 * 0",
    before: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    applied: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    managed: d.plan.files.map((f) => f.path),
    ...over,
  });
}

describe("decide", () => {
  test("a fresh host needs every file, a restart of both services, and keeps its values for restore", () => {
    const d = decide(profile, report(), { stateName: "web1" });
    expect(d.inSync).toBe(false);
    expect(d.plan.files.map((f) => f.path)).toEqual(render(profile).map((f) => f.path));
    expect(d.plan.services.map((s) => [s.unit, s.action])).toEqual([["php8.2-fpm", "restart"], ["nginx", "restart"]]);
    expect(d.before).toEqual({ "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 });
    expect(d.plan.stateDir).toBe("/var/lib/pulumi-backlog/web1");
  });

  test("a converged host is in sync: no reasons, no service touched", () => {
    const d = decide(profile, converged(), { stateName: "web1" });
    expect(d.reasons).toEqual([]);
    expect(d.inSync).toBe(true);
    expect(d.plan.services.every((s) => s.action === "none")).toBe(true);
  });

  test("a stale socket (somaxconn right, socket old) restarts only that service", () => {
    const d = decide(profile, converged({ ssUnix: "u_str LISTEN 0 4096 /run/php/php8.2-fpm.sock 1 * 0" }), { stateName: "web1" });
    expect(d.inSync).toBe(false);
    expect(d.reasons.join("\n")).toMatch(/php-fpm pool www .*expected 8192, host has 4096/);
    expect(d.plan.services.map((s) => [s.unit, s.action])).toEqual([["php8.2-fpm", "restart"], ["nginx", "none"]]);
  });

  test("the same desired state gives the same fingerprint; another profile another one", () => {
    const a = decide(profile, converged(), { stateName: "web1" });
    const b = decide(profile, converged({ ssTcp: "" }), { stateName: "web1" });
    expect(b.desiredHash).toBe(a.desiredHash);
    const other = decide(defineProfile({ name: "web", backlog: 9000 }), converged(), { stateName: "web1" });
    expect(other.desiredHash).not.toBe(a.desiredHash);
  });

  test("files no longer in the profile are retired and their service restarted", () => {
    const d = decide(profile, converged({ managed: [...converged().managed, "/etc/php/8.2/fpm/pool.d/old.conf"] }), { stateName: "web1" });
    expect(d.plan.retired).toEqual(["/etc/php/8.2/fpm/pool.d/old.conf"]);
    expect(d.plan.services.find((s) => s.unit === "php8.2-fpm")?.action).toBe("restart");
  });

  test("a key the host does not expose fails, naming the key and the reason", () => {
    expect(() => decide(profile, report({ sysctls: { "net.core.somaxconn": 4096 } }), { stateName: "web1" }))
      .toThrow(/net\.ipv4\.tcp_max_syn_backlog: not exposed in \/proc\/sys .*unprivileged user namespace/);
  });

  test("a machine-global key on a container fails, naming the key and the reason", () => {
    const global = defineProfile({ name: "g", backlog: 1024, netdevMaxBacklog: { value: 5000, machineGlobal: true } });
    const r = report({ sysctls: { ...report().sysctls, "net.core.netdev_max_backlog": 1000 }, container: "systemd-nspawn" });
    expect(() => decide(global, r, { stateName: "g" })).toThrow(/net\.core\.netdev_max_backlog: global to the machine.*container \(systemd-nspawn\)/);
  });
});

describe("hostOwnValues (what mode atLeast never lowers)", () => {
  const key = "net.core.somaxconn";
  const own = (now: number, before?: number, applied?: number, assumed?: number) =>
    hostOwnValues([key], {
      sysctls: { [key]: now },
      before: before === undefined ? {} : { [key]: before },
      applied: applied === undefined ? {} : { [key]: applied },
      own: assumed === undefined ? {} : { [key]: assumed },
    })[key];
  test.each([
    ["first deploy: the running value", 4096, undefined, undefined, undefined, 4096],
    ["unchanged since our deploy: the original", 8192, 4096, 8192, 4096, 4096],
    ["raised by hand since: the running value", 20000, 4096, 8192, 4096, 20000],
    ["kept by the last deploy and unchanged: still the host's own", 20000, 4096, 20000, 20000, 20000],
    ["lowered by hand since: the running value", 1000, 4096, 8192, 4096, 1000],
  ])("%s", (_name, now, before, applied, assumed, expected) => {
    expect(own(now, before, applied, assumed)).toBe(expected);
  });
});

describe("the host's own value kept for the next deploy", () => {
  const raised = report({
    sysctls: { "net.core.somaxconn": 20000, "net.ipv4.tcp_max_syn_backlog": 8192 },
    before: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    applied: { "net.core.somaxconn": 20000, "net.ipv4.tcp_max_syn_backlog": 8192 },
    own: { "net.core.somaxconn": 20000, "net.ipv4.tcp_max_syn_backlog": 2048 },
  });
  test("mode atLeast keeps a value raised by hand, and remembers it", () => {
    const d = decide(profile, raised, { stateName: "web1" });
    expect(d.expected.find((e) => e.setting === "net.core.somaxconn")?.expected).toBe(20000);
    expect(d.plan.hostOwn).toEqual({ "net.core.somaxconn": 20000, "net.ipv4.tcp_max_syn_backlog": 2048 });
  });
  test("mode exact sets the profile and forgets the raised value: the original is the host's own again", () => {
    const exact = defineProfile({ name: "web", backlog: 8192, mode: "exact" });
    const d = decide(exact, raised, { stateName: "web1" });
    expect(d.expected.find((e) => e.setting === "net.core.somaxconn")?.expected).toBe(8192);
    expect(d.plan.hostOwn).toEqual({ "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 });
  });
});

describe("bootOverrides", () => {
  const keys = ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"];
  const dropIn = "/etc/sysctl.d/zz-pulumi-backlog.conf";
  test("files sorting before the drop-in do not override it; Debian's 99-sysctl.conf link neither", () => {
    expect(bootOverrides([
      "/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024",
      "/usr/lib/sysctl.d/50-default.conf:net.ipv4.tcp_max_syn_backlog=512",
      `${dropIn}:net.core.somaxconn = 8192`,
    ], dropIn, keys)).toEqual([]);
  });
  test("a later-sorted file in any directory overrides, with slashes or dots", () => {
    expect(bootOverrides([
      "/run/sysctl.d/zzz-tuning.conf:net/core/somaxconn=65535",
      "/usr/lib/sysctl.d/zzzz.conf:-net.ipv4.tcp_max_syn_backlog = 1",
    ], dropIn, keys)).toEqual([
      { key: "net.core.somaxconn", file: "/run/sysctl.d/zzz-tuning.conf", line: "net/core/somaxconn=65535" },
      { key: "net.ipv4.tcp_max_syn_backlog", file: "/usr/lib/sysctl.d/zzzz.conf", line: "-net.ipv4.tcp_max_syn_backlog = 1" },
    ]);
  });
  test("a same-named file in a later directory is shadowed by the one in /etc", () => {
    expect(bootOverrides([
      "/etc/sysctl.d/zzz.conf:net.core.rmem_max = 1",
      "/usr/lib/sysctl.d/zzz.conf:net.core.somaxconn = 1",
    ], dropIn, keys)).toEqual([]);
  });
});
