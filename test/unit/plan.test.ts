/**
 * The host scripts, run for real with /bin/sh against files in a temporary directory (no root
 * needed: the managed files belong to the current user and the "services" are true/false).
 */
import { execFileSync, spawnSync } from "child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "fs";
import { userInfo, tmpdir } from "os";
import { join } from "path";
import { ApplyPlan, ManagedFile, applyScript, backupName, contentHash, parseReport, probeScript, procPath, restoreScript } from "../../components/plan";

const owner = userInfo().username;
const group = execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();

function sh(script: string): { code: number; stdout: string } {
  const r = spawnSync("/bin/sh", ["-s"], { input: script, encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout };
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "backlog-plan-"));
  const kept = join(dir, "etc", "kept.conf");
  const fresh = join(dir, "etc", "it's $new.conf"); // quoting: a quote, a space and a dollar
  execFileSync("mkdir", ["-p", join(dir, "etc")]);
  writeFileSync(kept, "original\n");
  const file = (path: string, content: string): ManagedFile => ({ path, content, mode: "0640", owner, group });
  const plan = (files: ManagedFile[], test = "true"): ApplyPlan => ({
    stateDir: join(dir, "state"), files, sysctlKeys: [], services: [{ unit: "svc", test: [test], action: "none" }],
  });
  return { dir, kept, fresh, file, plan };
}

test("procPath maps dotted keys and refuses anything else", () => {
  expect(procPath("net.core.somaxconn")).toBe("/proc/sys/net/core/somaxconn");
  expect(() => procPath("net/core/../somaxconn")).toThrow(/not a dotted kernel parameter name/);
  expect(() => procPath("somaxconn")).toThrow();
});

test("apply writes every file with its mode, keeps the originals once, and reports the new hashes", () => {
  const { kept, fresh, file, plan } = setup();
  const p = plan([file(kept, "managed 1\n"), file(fresh, "new file\n")]);
  const first = sh(applyScript(p));
  expect(first.code).toBe(0);
  expect(readFileSync(kept, "utf8")).toBe("managed 1\n");
  expect(readFileSync(fresh, "utf8")).toBe("new file\n");
  expect((execFileSync("stat", ["-c", "%a", fresh], { encoding: "utf8" })).trim()).toBe("640");
  const report = parseReport(first.stdout);
  expect(report.complete).toBe(true);
  expect(report.files[kept]).toBe(contentHash("managed 1\n"));
  expect(report.managed.sort()).toEqual([fresh, kept].sort());

  // A second deploy does not take the managed content for the original.
  expect(sh(applyScript(plan([file(kept, "managed 2\n"), file(fresh, "new file\n")]))).code).toBe(0);
  expect(readFileSync(join(p.stateDir, "orig", `${backupName(kept)}.file`), "utf8")).toBe("original\n");
  expect(existsSync(join(p.stateDir, "orig", `${backupName(fresh)}.absent`))).toBe(true);
});

test("a failing configuration test puts every file back, exits 10 and reports the test's output", () => {
  const { kept, fresh, file, plan } = setup();
  const failing = plan([file(kept, "broken\n"), file(fresh, "broken\n")], "false");
  const r = sh(applyScript(failing));
  expect(r.code).toBe(10);
  expect(parseReport(r.stdout).failure?.step).toBe("test svc");
  expect(readFileSync(kept, "utf8")).toBe("original\n");
  expect(existsSync(fresh)).toBe(false);
});

test("restore gives back the originals: the old content, and no file where there was none", () => {
  const { kept, fresh, file, plan } = setup();
  const p = plan([file(kept, "managed\n"), file(fresh, "new\n")]);
  expect(sh(applyScript(p)).code).toBe(0);
  const r = sh(restoreScript({ ...p, services: [], paths: [kept, fresh] }));
  expect(r.code).toBe(0);
  expect(readFileSync(kept, "utf8")).toBe("original\n");
  expect(existsSync(fresh)).toBe(false);
  expect(existsSync(p.stateDir)).toBe(false);
});

test("a retired file (no longer in the plan) gets its original back at the next apply", () => {
  const { kept, fresh, file, plan } = setup();
  expect(sh(applyScript(plan([file(kept, "managed\n"), file(fresh, "new\n")]))).code).toBe(0);
  const r = sh(applyScript({ ...plan([file(kept, "managed\n")]), retired: [fresh] }));
  expect(r.code).toBe(0);
  expect(existsSync(fresh)).toBe(false);
  expect(parseReport(r.stdout).managed).toEqual([kept]);
});

test("probe reads without writing anything", () => {
  const { dir, kept } = setup();
  const r = sh(probeScript({ stateDir: join(dir, "state"), sysctlKeys: [], paths: [kept, join(dir, "missing")], units: [] }));
  const report = parseReport(r.stdout);
  expect(report.complete).toBe(true);
  expect(report.files[kept]).toBe(contentHash("original\n"));
  expect(report.files[join(dir, "missing")]).toBeNull();
  expect(existsSync(join(dir, "state"))).toBe(false);
});

test("parseReport reads every section and flags an unfinished report", () => {
  const text = [
    "@@ sysctl net.core.somaxconn", "4096",
    "@@ sysctl net.ipv4.tcp_max_syn_backlog", "!missing",
    "@@ file /etc/x", "!absent",
    "@@ sysctl.d", "/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024",
    "@@ ss-tcp", "LISTEN 0 511 0.0.0.0:80 0.0.0.0:*",
    "@@ ss-unix", "",
    "@@ container", "systemd-nspawn",
    "@@ unit nginx", "active",
    "@@ before", "sysctl.net.core.somaxconn:4096",
    "@@ applied", "applied.net.core.somaxconn:8192",
    "@@ managed", "/etc/x", "",
  ].join("\n");
  const r = parseReport(text);
  expect(r.complete).toBe(false);
  expect(r.sysctls).toEqual({ "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": undefined });
  expect(r.files).toEqual({ "/etc/x": null });
  expect(r.sysctlSources).toEqual(["/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024"]);
  expect(r.ssTcp).toBe("LISTEN 0 511 0.0.0.0:80 0.0.0.0:*");
  expect(r.container).toBe("systemd-nspawn");
  expect(r.units).toEqual({ nginx: "active" });
  expect(r.before).toEqual({ "net.core.somaxconn": 4096 });
  expect(r.applied).toEqual({ "net.core.somaxconn": 8192 });
  expect(r.managed).toEqual(["/etc/x"]);
  expect(parseReport(text + "\n@@ end\n").complete).toBe(true);
});
