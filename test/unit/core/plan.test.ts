/**
 * The host scripts, run for real with /bin/sh against files in temporary directories: the state
 * directory and the run directory (lock, pause hooks) are temp dirs too, the managed files belong to
 * the current user, and the "services" are `true`/`false` (action `none`: no systemctl is called).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { type AddressInfo, type Server, createServer } from "node:net";
import { join } from "node:path";
import {
  type ApplyPlan,
  type ManagedFile,
  NEUTRALIZED_PREFIX,
  type RestorePlan,
  SCRIPT_EXIT,
  applyScript,
  backupName,
  checkOwner,
  contentHash,
  probeScript,
  procPath,
  reportToken,
  restoreScript,
  serviceAction,
} from "../../../src/core/plan";
import { type HostReport, parseReport } from "../../../src/core/report";
import { quote } from "../../../src/core/shell";
import { remoteCommand } from "../../../src/transport/ssh";

jest.setTimeout(60_000);

const user = userInfo().username;
const group = execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();
const token = reportToken();

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a script with `/bin/sh -s` (or through `wrapper`, a command that ends in `sh -s`). */
function sh(script: string, wrapper: string[] = ["/bin/sh", "-s"]): Run {
  const r = spawnSync(wrapper[0] as string, wrapper.slice(1), { input: script, encoding: "utf8", timeout: 50_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const report = (r: Run): HostReport => parseReport(r.stdout, token);

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A temp dir, removed after the tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** A host in a temp dir: an existing file, a path for a new one, state and run dirs. */
function setup() {
  const dir = tempDir("backlog-plan-");
  const etc = join(dir, "etc");
  mkdirSync(etc);
  const kept = join(etc, "kept.conf");
  const fresh = join(etc, "new-file.conf");
  writeFileSync(kept, "original\n");
  const stateDir = join(dir, "state");
  const runDir = join(dir, "run");
  const file = (path: string, content: string, mode = "0640"): ManagedFile => ({ path, content, mode, owner: user, group });
  const plan = (files: ManagedFile[], test = "true", owner = "web1"): ApplyPlan => ({
    stateDir,
    owner,
    files,
    sysctlKeys: [],
    services: [{ unit: "svc", test: [test], action: "none" }],
    sockets: { unixPaths: [], tcpPorts: [] },
  });
  const opts = { token, runDir, lockWaitSeconds: 5 };
  const apply = (p: ApplyPlan) => sh(applyScript(p, opts));
  const probe = (paths: string[], owner = "web1") => sh(probeScript({ stateDir, owner, sysctlKeys: [], paths, units: [], unixPaths: [], tcpPorts: [] }, opts));
  const restore = (p: Omit<RestorePlan, "stateDir">) => sh(restoreScript({ stateDir, ...p }, opts));
  return { dir, etc, kept, fresh, stateDir, runDir, file, plan, opts, apply, probe, restore };
}

/** Every file under a directory (recursively) with its content, to compare a tree before and after. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      const p = join(e.parentPath, e.name);
      out[p] = readFileSync(p, "latin1");
    }
  }
  return out;
}

const mode = (path: string) => execFileSync("stat", ["-c", "%a", path], { encoding: "utf8" }).trim();

async function waitFor(path: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new Error(`${path} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `sh -s` with the script on stdin; resolves its exit when it ends. */
function start(script: string): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn("/bin/sh", ["-s"], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  child.stdin!.end(script);
  return { child, done };
}

describe("plain helpers", () => {
  test("procPath maps dotted keys and refuses anything else", () => {
    expect(procPath("net.core.somaxconn")).toBe("/proc/sys/net/core/somaxconn");
    expect(() => procPath("net/core/../somaxconn")).toThrow(/not a dotted kernel parameter name/);
    expect(() => procPath("somaxconn")).toThrow();
  });

  test("owner names: a safe word, never a state entry's name", () => {
    expect(checkOwner("backlog.prod.web-1")).toBe("backlog.prod.web-1");
    for (const bad of ["", ".", "..", "a/b", "-x", "orig", "txn", "owners", "a b", "x".repeat(129)]) {
      expect(() => checkOwner(bad)).toThrow(/owner/);
    }
  });

  test("scripts refuse a bad token, state directory, owner, unit or mode before printing anything", () => {
    const p: ApplyPlan = { stateDir: "/s", owner: "o", files: [], sysctlKeys: [], services: [], sockets: { unixPaths: [], tcpPorts: [] } };
    expect(() => applyScript(p, { token: "NOT-HEX" })).toThrow(/token/);
    expect(() => applyScript({ ...p, owner: "../x" }, { token })).toThrow(/owner/);
    // Journal records are listed by path, split on blanks (pb_flush).
    expect(() => applyScript({ ...p, stateDir: "/var/lib/my state" }, { token })).toThrow(/state directory "\/var\/lib\/my state": must be an absolute path/);
    expect(() => probeScript({ ...p, paths: [], units: [], unixPaths: [], tcpPorts: [], stateDir: "relative" }, { token })).toThrow(
      /state directory "relative"/,
    );
    expect(() => applyScript({ ...p, services: [{ unit: "a;reboot", test: ["true"], action: "none" }] }, { token })).toThrow(/unit/);
    expect(() => applyScript({ ...p, files: [{ path: "/x", content: "", mode: "777; reboot", owner: "root", group: "root" }] }, { token })).toThrow(/mode/);
    expect(() => applyScript(p, { token, stepTimeoutSeconds: -1 })).toThrow(/stepTimeoutSeconds/);
  });

  test("a deliberate restart resets the unit's start counter first and is bounded", () => {
    expect(serviceAction("restart", "php8.2-fpm", 30)).toBe("systemctl reset-failed php8.2-fpm >/dev/null 2>&1; timeout -k 5 30 systemctl restart php8.2-fpm");
  });
});

describe("apply", () => {
  test("writes every file with its mode, keeps the originals once, records the owner; a probe reads the new hashes", () => {
    const { kept, fresh, stateDir, file, plan, apply, probe } = setup();
    const first = apply(plan([file(kept, "managed 1\n"), file(fresh, "new file\n", "0600")]));
    expect(first.code).toBe(0);
    expect(readFileSync(kept, "utf8")).toBe("managed 1\n");
    expect(readFileSync(fresh, "utf8")).toBe("new file\n");
    expect(mode(kept)).toBe("640");
    expect(mode(fresh)).toBe("600");
    const r = report(first);
    expect(r.complete).toBe(true);
    expect(r.failure).toBeUndefined();
    // The apply's own report does not read the files again (each was checked before its rename).
    expect(r.files).toEqual({});
    const p = report(probe([kept, fresh]));
    expect(p.files[kept]).toBe(contentHash("managed 1\n"));
    expect(p.contents[fresh]).toBe("new file\n");
    expect(r.managed.sort()).toEqual([fresh, kept].sort());
    expect(r.owners).toEqual({ web1: [kept, fresh] });
    expect(r.journalOpen).toBe(false);
    expect(r.generation).toBe(1);
    expect(r.steps).toEqual(expect.arrayContaining(["lock", "recover", "journal", "test", "commit"]));
    expect(existsSync(join(stateDir, "txn"))).toBe(false);

    // A second deploy does not take the managed content for the original.
    const second = apply(plan([file(kept, "managed 2\n"), file(fresh, "new file\n")]));
    expect(second.code).toBe(0);
    expect(report(second).generation).toBe(2);
    expect(readFileSync(kept, "utf8")).toBe("managed 2\n");
    expect(readFileSync(join(stateDir, "orig", `${backupName(kept)}.file`), "utf8")).toBe("original\n");
    expect(existsSync(join(stateDir, "orig", `${backupName(fresh)}.absent`))).toBe(true);
  });

  test("quoting: a path with a quote, a space and a dollar is written where it says (the report refuses such a path: profiles only have plain ones)", () => {
    const { etc, stateDir, file, plan, apply } = setup();
    const odd = join(etc, "it's $new `x`.conf");
    const r = apply(plan([file(odd, "odd\n")]));
    expect(r.code).toBe(0);
    expect(readFileSync(odd, "utf8")).toBe("odd\n");
    expect(readdirSync(etc).sort()).toEqual(["it's $new `x`.conf", "kept.conf"]);
    expect(readFileSync(join(stateDir, "owners", "web1"), "utf8")).toBe(`${odd}\n`);
    expect(() => report(r)).toThrow(expect.objectContaining({ name: "ReportError", message: expect.stringMatching(/is not a managed path/) }));
  });

  // COMPONENT BUG (reported to the lead, not fixed here): plan.ts LIBRARY `pb_put` returns early
  // when the content is unchanged (`if [ -f "$p" ] && cmp -s "$t" "$p"; then rm -f "$t"; return 0; fi`),
  // before the mode and owner it set on the temp file reach the target: a file whose content is right
  // but whose mode (or owner/group) differs keeps the wrong one, and the apply reports success.
  // `test.failing` until that is fixed; then make it a plain `test`.
  test("a file with the right content but another mode gets the plan's mode", () => {
    const { kept, file, plan, apply } = setup();
    expect(apply(plan([file(kept, "managed\n", "0640")])).code).toBe(0);
    expect(mode(kept)).toBe("640");
    expect(apply(plan([file(kept, "managed\n", "0600")])).code).toBe(0);
    expect(mode(kept)).toBe("600");
  });

  test("an unchanged file is not rewritten (no change reported)", () => {
    const { kept, file, plan, apply } = setup();
    expect(apply(plan([file(kept, "managed\n")])).code).toBe(0);
    const again = apply(plan([file(kept, "managed\n")]));
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`@@${token} changed\n`);
  });

  test("a failing configuration test puts every file back (and a retired one), exits 10, reports rolledBack and the test's output", () => {
    const { kept, fresh, stateDir, file, plan, apply } = setup();
    expect(apply(plan([file(kept, "managed\n"), file(fresh, "new\n")])).code).toBe(0);
    const before = snapshot(join(stateDir, ".."));
    const failing = { ...plan([file(kept, "broken\n")], "false"), retired: [fresh] };
    const r = apply(failing);
    expect(r.code).toBe(SCRIPT_EXIT.configTest);
    const rep = report(r);
    expect(rep.failure?.step).toBe("test svc");
    expect(rep.rolledBack).toBe(true);
    expect(rep.complete).toBe(false);
    expect(readFileSync(kept, "utf8")).toBe("managed\n");
    expect(readFileSync(fresh, "utf8")).toBe("new\n");
    expect(existsSync(join(stateDir, "txn"))).toBe(false);
    // Files, originals, owners and the generation are exactly as before (the lock's holder note aside).
    const after = snapshot(join(stateDir, ".."));
    const noHolder = (s: Record<string, string>) => Object.fromEntries(Object.entries(s).filter(([p]) => !p.endsWith("/run/holder")));
    expect(noHolder(after)).toEqual(noHolder(before));
  });

  describe("after the services, before the commit: something listens on each socket of the profile (a reload is asynchronous)", () => {
    // The action is "decided on the host" as none: no systemctl runs, but the check is in the script.
    // The unit's cgroup is a directory whose cgroup.procs names this test's process (the script
    // reads a unit's processes from there): sockets this process holds are the unit's.
    const onHost = (p: ApplyPlan, sockets: ApplyPlan["sockets"]): ApplyPlan => {
      const cg = join(p.stateDir, "..", "cg");
      mkdirSync(cg, { recursive: true });
      writeFileSync(join(cg, "cgroup.procs"), `${process.pid}\n`);
      return {
        ...p,
        sockets,
        beforeServices: [`PB_CGS=" svc=${cg} "`, "act=none why='' pairs='' olds=''"],
        services: [{ unit: "svc", test: ["true"], action: "none", decidedOnHost: { action: "act", reason: "why", pairs: "pairs", olds: "olds" } }],
      };
    };
    const servers: Server[] = [];
    afterAll(() => Promise.all(servers.map((srv) => new Promise((r) => srv.close(r)))));
    const listen = (at: string | number) =>
      new Promise<Server>((resolve) => {
        const srv = createServer();
        servers.push(srv);
        if (typeof at === "number") srv.listen(at, "127.0.0.1", () => resolve(srv));
        else srv.listen(at, () => resolve(srv));
      });

    test("sockets that listen: committed, the step in the report", async () => {
      const { dir, kept, file, plan, opts } = setup();
      const path = join(dir, "app.sock");
      await listen(path);
      const tcp = (await listen(0)).address() as AddressInfo;
      const r = await start(applyScript(onHost(plan([file(kept, "managed\n")]), { unixPaths: [path], tcpPorts: [tcp.port] }), opts)).done;
      expect(r.code).toBe(0);
      expect(report(r).steps).toEqual(expect.arrayContaining(["listening", "commit"]));
      expect(readFileSync(kept, "utf8")).toBe("managed\n");
    });

    test("a socket that comes a moment after the service step (a reload binding it) is waited for", async () => {
      const { dir, kept, file, plan, opts } = setup();
      const path = join(dir, "late.sock");
      const run = start(applyScript(onHost(plan([file(kept, "managed\n")]), { unixPaths: [path], tcpPorts: [] }), { ...opts, stepTimeoutSeconds: 5 }));
      setTimeout(() => void listen(path), 700);
      const r = await run.done;
      expect(r.code).toBe(0);
      expect(readFileSync(kept, "utf8")).toBe("managed\n");
    });

    test("a socket that never listens: exit 12 at step listening, naming it, and everything put back", async () => {
      const { dir, kept, stateDir, file, plan, opts } = setup();
      const path = join(dir, "never.sock");
      const t = Date.now();
      const r = await start(applyScript(onHost(plan([file(kept, "managed\n")]), { unixPaths: [path], tcpPorts: [1] }), { ...opts, stepTimeoutSeconds: 2 }))
        .done;
      expect(r.code).toBe(SCRIPT_EXIT.service);
      const rep = report(r);
      expect(rep.failure?.step).toBe("listening");
      expect(rep.failure?.output).toBe(
        `after the service steps, no socket of svc listens on: unix ${path}, tcp 1 (waited 2 s): the service did not load the new files`,
      );
      expect(rep.rolledBack).toBe(true);
      expect(Date.now() - t).toBeGreaterThanOrEqual(2000);
      expect(readFileSync(kept, "utf8")).toBe("original\n");
      expect(existsSync(join(stateDir, "txn"))).toBe(false);
    });

    test("another process's socket on the path and the port does not count (php-fpm does not bind a path another process listens on; nginx fails on a port taken after the port check)", async () => {
      const { dir, kept, file, plan, opts } = setup();
      const path = join(dir, "foreign.sock");
      const foreign = spawn(process.execPath, [
        "-e",
        `const n=require("net");let k=0;const up=()=>{if(++k===2)console.log("up")};n.createServer().listen(${JSON.stringify(path)},up);const t=n.createServer().listen(0,"127.0.0.1",()=>{console.log(t.address().port);up()});setTimeout(()=>{},60000)`,
      ]);
      try {
        const out = await new Promise<string>((resolve) => {
          let text = "";
          foreign.stdout.on("data", (d: Buffer) => {
            text += d.toString();
            if (text.includes("up")) resolve(text);
          });
        });
        const port = Number(out.split("\n")[0]);
        const r = await start(applyScript(onHost(plan([file(kept, "managed\n")]), { unixPaths: [path], tcpPorts: [port] }), { ...opts, stepTimeoutSeconds: 1 }))
          .done;
        expect(r.code).toBe(SCRIPT_EXIT.service);
        expect(report(r).failure?.output).toBe(
          `after the service steps, no socket of svc listens on: unix ${path}, tcp ${port} (waited 1 s): the service did not load the new files`,
        );
        expect(readFileSync(kept, "utf8")).toBe("original\n");
      } finally {
        foreign.kill();
      }
    });

    test("a host that cannot name a unit's cgroup: any socket there counts, a missing one still fails", async () => {
      const { dir, kept, file, plan, opts } = setup();
      const path = join(dir, "any.sock");
      await listen(path);
      const noCgroup = (sockets: ApplyPlan["sockets"]) => {
        const p = onHost(plan([file(kept, "managed\n")]), sockets);
        return { ...p, beforeServices: (p.beforeServices ?? []).filter((l) => !l.startsWith("PB_CGS=")) };
      };
      expect((await start(applyScript(noCgroup({ unixPaths: [path], tcpPorts: [] }), opts)).done).code).toBe(0);
      const r = await start(applyScript(noCgroup({ unixPaths: [path, join(dir, "none.sock")], tcpPorts: [] }), { ...opts, stepTimeoutSeconds: 1 })).done;
      expect(r.code).toBe(SCRIPT_EXIT.service);
      expect(report(r).failure?.output).toContain(`listens on: unix ${join(dir, "none.sock")} (waited 1 s)`);
    });

    test("no reload or restart in the plan: no wait, no step", () => {
      const { kept, file, plan, apply } = setup();
      const r = apply({ ...plan([file(kept, "managed\n")]), sockets: { unixPaths: ["/nonexistent/x.sock"], tcpPorts: [] } });
      expect(r.code).toBe(0);
      expect(report(r).steps).not.toContain("listening");
    });
  });

  test("on a fresh host a failing test leaves no file behind where there was none", () => {
    const { kept, fresh, file, plan, apply } = setup();
    const r = apply(plan([file(kept, "broken\n"), file(fresh, "broken\n")], "false"));
    expect(r.code).toBe(10);
    expect(report(r).rolledBack).toBe(true);
    expect(readFileSync(kept, "utf8")).toBe("original\n");
    expect(existsSync(fresh)).toBe(false);
  });

  describe("a write that fails (file size limit: a full disk) exits 13 and leaves every file as it was", () => {
    const limited = ["/bin/sh", "-c", "ulimit -f 1; exec /bin/sh -s"];
    const big = "x".repeat(2000) + "\n";
    const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.startsWith(".pulumi-backlog."));

    test("the new content does not fit: old file intact byte for byte, the kept original intact", () => {
      const { etc, kept, stateDir, file, plan, opts } = setup();
      const original = "o".repeat(1000) + "\n";
      writeFileSync(kept, original);
      expect(sh(applyScript(plan([file(kept, "managed 1\n")]), opts)).code).toBe(0);
      const r = sh(applyScript(plan([file(kept, big)]), opts), limited);
      expect(r.code).toBe(SCRIPT_EXIT.write);
      const rep = report(r);
      expect(rep.failure?.step).toBe(`write ${kept}`);
      expect(rep.rolledBack).toBe(true);
      expect(readFileSync(kept, "utf8")).toBe("managed 1\n");
      expect(readFileSync(join(stateDir, "orig", `${backupName(kept)}.file`), "utf8")).toBe(original);
      expect(leftovers(etc)).toEqual([]);
      expect(existsSync(join(stateDir, "txn"))).toBe(false);
    });

    test("the original cannot be kept (too large to copy): nothing replaced, no truncated original kept", () => {
      const { etc, kept, stateDir, file, plan, opts } = setup();
      const original = "o".repeat(1000) + "\n";
      writeFileSync(kept, original);
      const r = sh(applyScript(plan([file(kept, "small\n")]), opts), limited);
      expect(r.code).toBe(SCRIPT_EXIT.write);
      expect(report(r).failure?.step).toBe(`write ${kept}`);
      expect(report(r).rolledBack).toBe(true);
      expect(readFileSync(kept, "utf8")).toBe(original);
      const origFile = join(stateDir, "orig", `${backupName(kept)}.file`);
      // Either no original kept at all, or the whole of it: never a truncated one.
      if (existsSync(origFile)) expect(readFileSync(origFile, "utf8")).toBe(original);
      expect(existsSync(join(stateDir, "orig", `${backupName(kept)}.path`))).toBe(existsSync(origFile));
      expect(leftovers(etc)).toEqual([]);
      expect(leftovers(join(stateDir, "orig"))).toEqual([]);
      // A later run without the limit keeps the real original and applies.
      expect(sh(applyScript(plan([file(kept, "small\n")]), opts)).code).toBe(0);
      expect(readFileSync(origFile, "utf8")).toBe(original);
    });
  });

  test("lock: another run holding the host's lock makes the apply wait, then exit 14 naming the holder; nothing changed", async () => {
    const { kept, runDir, file, plan, opts } = setup();
    mkdirSync(runDir, { mode: 0o700 });
    writeFileSync(join(runDir, "holder"), "other.stack.web1 (pid 4242, since 2026-01-01T00:00:00Z)\n");
    const holder = spawn("flock", [join(runDir, "lock"), "sleep", "30"], { detached: true, stdio: "ignore" });
    try {
      // Wait until flock holds the lock.
      const until = Date.now() + 10_000;
      while (spawnSync("flock", ["-n", join(runDir, "lock"), "true"]).status === 0) {
        if (Date.now() > until) throw new Error("flock did not take the lock");
        await new Promise((r) => setTimeout(r, 50));
      }
      const t0 = Date.now();
      const r = sh(applyScript(plan([file(kept, "managed\n")]), { ...opts, lockWaitSeconds: 1 }));
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      expect(r.code).toBe(SCRIPT_EXIT.locked);
      const rep = report(r);
      expect(rep.failure?.step).toBe("lock");
      expect(rep.failure?.output).toContain("other.stack.web1 (pid 4242, since 2026-01-01T00:00:00Z)");
      expect(readFileSync(kept, "utf8")).toBe("original\n");
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
    await new Promise((r) => holder.on("exit", r));
    // Once the lock is free, the same run goes through and leaves its own name as the holder.
    const ok = sh(applyScript(plan([file(kept, "managed\n")]), opts));
    expect(ok.code).toBe(0);
    expect(readFileSync(join(runDir, "holder"), "utf8")).toMatch(/^web1 \(pid \d+, since /);
  });

  test("a plan decided on a stale probe (another run committed since) stops with exit 19 before changing anything", () => {
    const { kept, file, plan, apply } = setup();
    expect(apply(plan([file(kept, "managed 1\n")])).code).toBe(0); // generation 1
    const r = apply({ ...plan([file(kept, "managed 2\n")]), generation: 0 });
    expect(r.code).toBe(SCRIPT_EXIT.stale);
    expect(report(r).failure?.step).toBe("changed");
    expect(readFileSync(kept, "utf8")).toBe("managed 1\n");
    expect(apply({ ...plan([file(kept, "managed 2\n")]), generation: 1 }).code).toBe(0);
  });

  test("a retired file (no longer in the plan) gets its original back at the next apply", () => {
    const { kept, fresh, file, plan, apply } = setup();
    expect(apply(plan([file(kept, "managed\n"), file(fresh, "new\n")])).code).toBe(0);
    const r = apply({ ...plan([file(kept, "managed\n")]), retired: [fresh] });
    expect(r.code).toBe(0);
    expect(existsSync(fresh)).toBe(false);
    expect(report(r).owners).toEqual({ web1: [kept] });
  });
});

describe("journal: a run cut short is rolled back", () => {
  test("SIGKILL after the files were written: a probe sees the open journal and the old files; the next apply recovers and converges", async () => {
    const { kept, fresh, stateDir, runDir, file, plan, opts, probe, apply } = setup();
    const p = plan([file(kept, "managed\n"), file(fresh, "new\n")]);
    mkdirSync(runDir, { mode: 0o700 });
    writeFileSync(join(runDir, "pause.test"), "");
    const { child, done } = start(applyScript(p, opts));
    await waitFor(join(runDir, "paused.test"));
    // The files are written, the journal is open.
    expect(readFileSync(kept, "utf8")).toBe("managed\n");
    expect(existsSync(join(stateDir, "txn", "open"))).toBe(true);
    process.kill(child.pid!, "SIGKILL");
    const killed = await done;
    expect(killed.signal).toBe("SIGKILL");
    rmSync(join(runDir, "pause.test"));
    // The files stay as the killed run left them...
    expect(readFileSync(kept, "utf8")).toBe("managed\n");

    // ...but the probe reports the journal and the values it will give back: the old files.
    const pr = probe([kept, fresh]);
    expect(pr.code).toBe(0);
    const seen = report(pr);
    expect(seen.complete).toBe(true);
    expect(seen.journalOpen).toBe(true);
    expect(seen.files[kept]).toBe(contentHash("original\n"));
    expect(seen.contents[kept]).toBe("original\n");
    expect(seen.files[fresh]).toBeNull();

    // The next apply rolls the cut-short run back first, then applies as usual.
    const r = apply(p);
    expect(r.code).toBe(0);
    const rep = report(r);
    expect(rep.recovered).toBe(true);
    expect(rep.complete).toBe(true);
    expect(rep.journalOpen).toBe(false);
    expect(readFileSync(kept, "utf8")).toBe("managed\n");
    expect(readFileSync(fresh, "utf8")).toBe("new\n");
    expect(existsSync(join(stateDir, "txn"))).toBe(false);
    // The original kept by the killed run is the real one.
    expect(readFileSync(join(stateDir, "orig", `${backupName(kept)}.file`), "utf8")).toBe("original\n");
  });

  test("a restore after a cut-short run recovers first, then gives the originals back", async () => {
    const { kept, fresh, stateDir, runDir, file, plan, opts, restore } = setup();
    mkdirSync(runDir, { mode: 0o700 });
    writeFileSync(join(runDir, "pause.test"), "");
    const { child, done } = start(applyScript(plan([file(kept, "managed\n"), file(fresh, "new\n")]), opts));
    await waitFor(join(runDir, "paused.test"));
    process.kill(child.pid!, "SIGKILL");
    await done;
    rmSync(join(runDir, "pause.test"));
    const r = restore({ owner: "web1", paths: [kept, fresh], sysctlKeys: [], services: [] });
    expect(r.code).toBe(0);
    expect(report(r).recovered).toBe(true);
    expect(readFileSync(kept, "utf8")).toBe("original\n");
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(stateDir)).toBe(false);
  });

  test.each(["SIGTERM", "SIGHUP"] as const)("%s while paused: the script rolls back by itself and exits 17", async (signal) => {
    const { kept, fresh, stateDir, runDir, file, plan, opts } = setup();
    mkdirSync(runDir, { mode: 0o700 });
    writeFileSync(join(runDir, "pause.test"), "");
    const { child, done } = start(applyScript(plan([file(kept, "managed\n"), file(fresh, "new\n")]), opts));
    await waitFor(join(runDir, "paused.test"));
    expect(readFileSync(kept, "utf8")).toBe("managed\n");
    process.kill(child.pid!, signal);
    rmSync(join(runDir, "pause.test"));
    const r = await done;
    expect(r.code).toBe(SCRIPT_EXIT.interrupted);
    expect(readFileSync(kept, "utf8")).toBe("original\n");
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(join(stateDir, "txn"))).toBe(false);
    expect(existsSync(join(stateDir, "owners", "web1"))).toBe(false);
  });

  // COMPONENT BUG (low severity, reported to the lead, not fixed here): the commit is
  // `pb_note generation; rm -f "$S/txn/open"; rm -rf "$S/txn"`, but recovery (recoverLines:
  // `if [ -d "$S/txn" ]`), the probe's `journal` section and pb_rollback all key on the txn
  // *directory*, not on txn/open. A run that dies (SIGKILL, power loss) after removing txn/open,
  // while `rm -rf` has not removed the whole directory, was committed, yet the next probe reports the
  // journal open with the old files, and the next run rolls back whatever entries remain: part of a
  // committed transaction. Simulated here: paused at the commit step, killed, then the commit's first
  // two commands done by hand. `test.failing` until recovery keys on txn/open.
  test("a run that died after its commit removed txn/open is committed: not reported open, not rolled back", async () => {
    const { kept, stateDir, runDir, file, plan, opts, probe } = setup();
    mkdirSync(runDir, { mode: 0o700 });
    writeFileSync(join(runDir, "pause.commit"), "");
    const { child, done } = start(applyScript(plan([file(kept, "managed\n")]), opts));
    await waitFor(join(runDir, "paused.commit"));
    process.kill(child.pid!, "SIGKILL");
    await done;
    rmSync(join(runDir, "pause.commit"));
    writeFileSync(join(stateDir, "generation"), "1\n");
    rmSync(join(stateDir, "txn", "open"));
    const seen = report(probe([kept]));
    expect(seen.journalOpen).toBe(false);
    expect(seen.files[kept]).toBe(contentHash("managed\n"));
  });

  test("what a run killed between a record's write and its rename leaves (pb_note's .pb-new) is no record: the probe ignores it, the rollback skips it, the next run removes it", () => {
    const { kept, stateDir, file, plan, apply, probe } = setup();
    expect(apply(plan([file(kept, "managed 1\n")])).code).toBe(0);
    writeFileSync(join(stateDir, "owners", "web1.pb-new"), `${kept}\n/etc/elsewhere.conf\n`);
    writeFileSync(join(stateDir, "applied.net.core.somaxconn.pb-new"), "1\n");
    // An open journal whose only kernel record never got its name.
    mkdirSync(join(stateDir, "txn", "k"), { recursive: true });
    writeFileSync(join(stateDir, "txn", "open"), "web1\n");
    writeFileSync(join(stateDir, "txn", "k", "net.core.somaxconn.pb-new"), "1\n");
    const seen = report(probe([kept]));
    expect(seen.owners).toEqual({ web1: [kept] });
    expect(seen.journalOpen).toBe(true);
    const next = apply(plan([file(kept, "managed 2\n")]));
    expect(next.code).toBe(0);
    expect(report(next).steps).toContain("recover");
    expect(readFileSync(kept, "utf8")).toBe("managed 2\n");
    expect(readdirSync(stateDir).filter((f) => f.endsWith(".pb-new"))).toEqual([]);
    expect(readdirSync(join(stateDir, "owners"))).toEqual(["web1"]);
  });
});

describe("relisten programs (listen() again on a running socket, in place)", () => {
  // The perl and python programs the scripts carry, taken from a generated script. They find the
  // socket among the processes listed in a cgroup directory's cgroup.procs files: a temp dir with
  // one cgroup.procs stands in for a unit's cgroup. pidfd_getfd needs ptrace rights: run as root.
  const script = applyScript({ stateDir: "/s", owner: "o", files: [], sysctlKeys: [], services: [], sockets: { unixPaths: [], tcpPorts: [] } }, { token });
  const assignment = (name: string, next: string) => script.slice(script.indexOf(`${name}=`), script.indexOf(next, script.indexOf(`${name}=`)));
  const programs = {
    perl: { assign: assignment("PB_RELISTEN_PL", "\nPB_RELISTEN_PY="), run: 'perl -e "$PB_RELISTEN_PL" "$@"' },
    python3: { assign: assignment("PB_RELISTEN_PY", "\nexport LC_ALL=C"), run: 'python3 -c "$PB_RELISTEN_PY" "$@"' },
  };
  const root = process.getuid?.() === 0 && spawnSync("ss", ["-V"]).status === 0;

  async function listener(dir: string): Promise<{ pid: number; inode: number; stop: () => void }> {
    const child = spawn(
      "python3",
      [
        "-c",
        [
          "import os, socket, sys, time",
          "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(7)",
          "print(os.fstat(s.fileno()).st_ino, flush=True); time.sleep(60)",
        ].join("\n"),
        join(dir, "app.sock"),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const inode = await new Promise<number>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
    return { pid: child.pid!, inode, stop: () => child.kill("SIGKILL") };
  }
  const backlogOf = (path: string) => Number(execFileSync("ss", ["-H", "-l", "-n", "-x", "src", path], { encoding: "utf8" }).trim().split(/\s+/)[3]);

  test("the programs are carried quoted, as one shell word each", () => {
    expect(programs.perl.assign).toMatch(/^PB_RELISTEN_PL='\n/);
    expect(programs.python3.assign).toMatch(/^PB_RELISTEN_PY='\n/);
  });

  test.each(Object.keys(programs) as (keyof typeof programs)[])(
    "%s: the socket gets the new backlog, same inode; a socket the cgroup does not hold: exit 3, nothing done",
    async (name) => {
      if (!root || spawnSync(name, ["-v"]).error) return; // needs root, ss and the interpreter
      const dir = tempDir("backlog-relisten-");
      const sock = join(dir, "app.sock");
      const l = await listener(dir);
      try {
        writeFileSync(join(dir, "cgroup.procs"), `${l.pid}\n`);
        expect(backlogOf(sock)).toBe(7);
        const p = programs[name];
        const ok = spawnSync("/bin/sh", ["-c", `${p.assign}\n${p.run}`, "sh", dir, `${l.inode}=100`], { encoding: "utf8" });
        expect(ok.stderr).toBe("");
        expect(ok.stdout).toBe(`listened socket ${l.inode} of pid ${l.pid} with backlog 100\n`);
        expect(ok.status).toBe(0);
        expect(backlogOf(sock)).toBe(100);
        // The same socket (inode) still listens: nothing was closed or reopened.
        expect(execFileSync("ss", ["-H", "-l", "-n", "-x", "src", sock], { encoding: "utf8" })).toContain(` ${l.inode} `);
        // A socket no process of the cgroup holds.
        const other = spawnSync("/bin/sh", ["-c", `${p.assign}\n${p.run}`, "sh", dir, `${l.inode + 1000000}=5`], { encoding: "utf8" });
        expect(other.status).toBe(3);
        expect(other.stdout).toBe(`socket ${l.inode + 1000000} is not held by the unit's processes\n`);
        expect(backlogOf(sock)).toBe(100);
      } finally {
        l.stop();
      }
    },
  );
});

describe("restore", () => {
  test("gives back the originals byte for byte, and no file where there was none; the state directory goes", () => {
    const { kept, fresh, stateDir, file, plan, apply, restore } = setup();
    const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 10, 0x24, 0x27]);
    writeFileSync(kept, binary);
    expect(apply(plan([file(kept, "managed\n"), file(fresh, "new\n")])).code).toBe(0);
    const r = restore({ owner: "web1", paths: [kept, fresh], sysctlKeys: [], services: [] });
    expect(r.code).toBe(0);
    expect(report(r).complete).toBe(true);
    expect(readFileSync(kept).equals(binary)).toBe(true);
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(stateDir)).toBe(false);
  });

  test("with a second owner present: shared files and the state directory stay; this owner's own files come back", () => {
    const { etc, kept, fresh, stateDir, file, plan, apply, restore } = setup();
    const third = join(etc, "third.conf");
    writeFileSync(third, "third original\n");
    expect(apply(plan([file(kept, "managed by 1\n"), file(fresh, "new\n")], "true", "one")).code).toBe(0);
    expect(apply(plan([file(kept, "managed by 2\n"), file(third, "third by 2\n")], "true", "two")).code).toBe(0);
    const r = restore({ owner: "one", paths: [kept, fresh], sysctlKeys: [], services: [] });
    expect(r.code).toBe(0);
    const rep = report(r);
    expect(rep.warnings).toContain("shared with other owners: kernel values left as they are");
    expect(readFileSync(kept, "utf8")).toBe("managed by 2\n"); // shared: left to the other owner
    expect(existsSync(fresh)).toBe(false); // only this owner's: back to absent
    expect(readFileSync(third, "utf8")).toBe("third by 2\n");
    expect(existsSync(join(stateDir, "owners", "one"))).toBe(false);
    expect(existsSync(join(stateDir, "owners", "two"))).toBe(true);
    expect(readFileSync(join(stateDir, "orig", `${backupName(kept)}.file`), "utf8")).toBe("original\n");
    expect(rep.owners).toEqual({ two: [kept, third] });

    // The last owner's restore gives everything back and removes the state directory.
    const last = restore({ owner: "two", paths: [kept, third], sysctlKeys: [], services: [] });
    expect(last.code).toBe(0);
    expect(readFileSync(kept, "utf8")).toBe("original\n");
    expect(readFileSync(third, "utf8")).toBe("third original\n");
    expect(existsSync(stateDir)).toBe(false);
  });
});

test("probe reads without writing anything", () => {
  const { dir, kept, stateDir, probe } = setup();
  const r = probe([kept, join(dir, "missing")]);
  expect(r.code).toBe(0);
  const rep = report(r);
  expect(rep.complete).toBe(true);
  expect(rep.files[kept]).toBe(contentHash("original\n"));
  expect(rep.files[join(dir, "missing")]).toBeNull();
  expect(rep.journalOpen).toBe(false);
  expect(rep.generation).toBe(0);
  expect(existsSync(stateDir)).toBe(false);
});

test("the probe and the apply read this machine's kernel values whole (a sysctl file read at an offset gives nothing)", () => {
  const { kept, stateDir, file, plan, opts } = setup();
  const keys = ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"];
  const now = Object.fromEntries(keys.map((k) => [k, Number(readFileSync(procPath(k), "utf8").trim())]));
  const probed = report(sh(probeScript({ stateDir, owner: "web1", sysctlKeys: keys, paths: [], units: [], unixPaths: [], tcpPorts: [] }, opts)));
  expect(probed.sysctls).toEqual(now);
  // The apply keeps each value as it was (no sysctl file in the plan: nothing is written to the kernel).
  expect(sh(applyScript({ ...plan([file(kept, "managed\n")]), sysctlKeys: keys }, opts)).code).toBe(0);
  for (const k of keys) expect(readFileSync(join(stateDir, "orig", `sysctl.${k}`), "utf8")).toBe(`${now[k]}\n`);
  expect(report(sh(probeScript({ stateDir, owner: "web1", sysctlKeys: keys, paths: [], units: [], unixPaths: [], tcpPorts: [] }, opts))).generation).toBe(1);
});

describe("a script cut short in transit", () => {
  test("the pb_main wrapper: any prefix of an apply script changes nothing on disk", () => {
    const { dir, kept, fresh, file, plan, opts } = setup();
    const script = applyScript(plan([file(kept, "managed\n"), file(fresh, "new\n")]), opts);
    const before = snapshot(dir);
    // Half, and more cut points (inside the library, a here-document, the last line).
    const cuts = [Math.floor(script.length / 2), 100, Math.floor(script.length * 0.9), script.lastIndexOf("pb_main\n"), script.length - 2];
    for (const cut of cuts) {
      const r = sh(script.slice(0, cut));
      expect(r.stdout).not.toContain(`@@${token} step`);
      expect(snapshot(dir)).toEqual(before);
    }
    expect(existsSync(join(dir, "state"))).toBe(false);
    expect(existsSync(join(dir, "run"))).toBe(false);
  });

  test("remoteCommand runs the whole script it was made for", () => {
    const { kept, file, plan, opts } = setup();
    const script = applyScript(plan([file(kept, "managed\n")]), opts);
    const r = spawnSync("/bin/sh", ["-c", remoteCommand(script, false)], { input: script, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(parseReport(r.stdout, token).complete).toBe(true);
    expect(readFileSync(kept, "utf8")).toBe("managed\n");
  });

  test("remoteCommand with a truncated or altered script: exit 121 and not one line ran", () => {
    const { dir, kept, file, plan, opts } = setup();
    const script = applyScript(plan([file(kept, "managed\n")]), opts);
    const before = snapshot(dir);
    const command = remoteCommand(script, false);
    for (const input of [script.slice(0, Math.floor(script.length / 2)), script.slice(0, script.length - 1), "", script.replace("managed", "MANAGED")]) {
      const r = spawnSync("/bin/sh", ["-c", command], { input, encoding: "utf8" });
      expect(r.status).toBe(121);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("arrived incomplete or altered");
      expect(snapshot(dir)).toEqual(before);
    }
    // Only the length and the hash are on the command line, never a value of the script.
    expect(command).not.toContain(token);
    expect(command).not.toContain(kept);
    expect(remoteCommand(script, true).startsWith("sudo -n /bin/sh -c ")).toBe(true);
  });
});

describe("neutralize: conflicting sysctl lines commented out inside the transaction (issue #14)", () => {
  const CONF = "# classic advice\nnet.core.somaxconn = 128\nvm.swappiness = 10\n  -net/core/somaxconn=64"; // no final newline
  const prep = () => {
    const s = setup();
    const conf = join(s.etc, "sysctl.conf");
    writeFileSync(conf, CONF);
    execFileSync("chmod", ["0604", conf]);
    const plan = (lines: { line: number; text: string }[], test = "true"): ApplyPlan => ({
      ...s.plan([s.file(s.fresh, "x\n")], test),
      neutralize: [{ path: conf, lines }],
    });
    return { ...s, conf, plan };
  };

  test("comments out exactly the lines named, keeps mode and the other bytes; the file joins the owner's files; restore puts it back byte for byte", () => {
    const s = prep();
    const r = s.apply(
      s.plan([
        { line: 2, text: "net.core.somaxconn = 128" },
        { line: 4, text: "-net/core/somaxconn=64" },
      ]),
    );
    expect(r.code).toBe(0);
    expect(report(r).neutralized).toEqual([s.conf]);
    const marker = "# pulumi-backlog neutralized (conflicts with the drop-in; destroy puts it back): ";
    expect(readFileSync(s.conf, "utf8")).toBe(`# classic advice\n${marker}net.core.somaxconn = 128\nvm.swappiness = 10\n${marker}  -net/core/somaxconn=64\n`);
    expect(mode(s.conf)).toBe("604");
    expect(readFileSync(join(s.stateDir, "owners", "web1"), "utf8")).toContain(s.conf);
    const back = s.restore({ owner: "web1", paths: [s.fresh], sysctlKeys: [], services: [] });
    expect(back.code).toBe(0);
    expect(readFileSync(s.conf, "utf8")).toBe(CONF);
    expect(mode(s.conf)).toBe("604");
  });

  test("a line that changed since the probe stops the run (exit 19) and puts everything back; a hostile text is only compared, never run", () => {
    const s = prep();
    const before = snapshot(s.dir);
    const r = s.apply(s.plan([{ line: 2, text: "net.core.somaxconn = 128'; touch pwned; '$(touch pwned2)" }]));
    expect(r.code).toBe(19);
    expect(report(r).failure?.output).toContain("changed since the probe");
    expect(existsSync("pwned") || existsSync("pwned2") || existsSync(join(s.dir, "pwned"))).toBe(false);
    const after = snapshot(s.dir);
    expect(after[s.conf]).toBe(before[s.conf]);
    expect(existsSync(s.fresh)).toBe(false);
  });

  test("a later failed step (config test) gives the neutralized file back too", () => {
    const s = prep();
    const r = s.apply(s.plan([{ line: 2, text: "net.core.somaxconn = 128" }], "false"));
    expect(r.code).toBe(SCRIPT_EXIT.configTest);
    expect(readFileSync(s.conf, "utf8")).toBe(CONF);
    expect(mode(s.conf)).toBe("604");
  });

  test("refuses a line break in a line's text and a path that is not plain", () => {
    const s = prep();
    expect(() => applyScript({ ...s.plan([]), neutralize: [{ path: s.conf, lines: [{ line: 1, text: "a\nb" }] }] }, s.opts)).toThrow(/line break/);
    expect(() => applyScript({ ...s.plan([]), neutralize: [{ path: "/etc/x y.conf", lines: [{ line: 1, text: "a" }] }] }, s.opts)).toThrow(
      /not a sysctl file path/,
    );
  });
});

describe("neutralizeOnHost: the lines decided on the host (the standalone script), the same marker and journal", () => {
  const CONF = "# classic advice\nnet.core.somaxconn = 128\nvm.swappiness = 10\n";
  test("comments out the lines the host's command lists; the file stays the owner's while it neutralizes (retireStale) and goes back byte for byte once not", () => {
    const s = setup();
    const conf = join(s.etc, "sysctl.conf");
    writeFileSync(conf, CONF);
    const list = (lines: string[]) => (lines.length ? `printf '%s\\n' ${lines.map((l) => quote(l)).join(" ")}` : "true");
    const plan = (lines: string[] | undefined): ApplyPlan => ({
      ...s.plan([s.file(s.fresh, "x\n")]),
      retireStale: true,
      ...(lines ? { neutralizeOnHost: { list: list(lines), sourcePattern: `${quote(s.etc)}/*.conf` } } : {}),
    });
    const r = s.apply(plan([`${conf}\t2\tnet.core.somaxconn = 128`]));
    expect(r.code).toBe(0);
    expect(report(r).neutralized).toEqual([conf]);
    expect(readFileSync(conf, "utf8")).toBe(`# classic advice\n${NEUTRALIZED_PREFIX}net.core.somaxconn = 128\nvm.swappiness = 10\n`);
    expect(
      readFileSync(join(s.stateDir, "owners", "web1"), "utf8")
        .split("\n")
        .filter(Boolean)
        .sort(),
    ).toEqual([s.fresh, conf].sort());
    // Nothing more to neutralize: the file stays neutralized and this owner's.
    expect(s.apply(plan([])).code).toBe(0);
    expect(readFileSync(conf, "utf8")).toContain(NEUTRALIZED_PREFIX);
    expect(readFileSync(join(s.stateDir, "owners", "web1"), "utf8")).toContain(conf);
    // Not neutralizing any more (mode report): retired, given back byte for byte.
    const back = s.apply(plan(undefined));
    expect(back.code).toBe(0);
    expect(readFileSync(conf, "utf8")).toBe(CONF);
    expect(readFileSync(join(s.stateDir, "owners", "web1"), "utf8")).not.toContain(conf);
  });

  test("a listed line that changed stops the run (exit 19) and puts everything back", () => {
    const s = setup();
    const conf = join(s.etc, "sysctl.conf");
    writeFileSync(conf, CONF);
    const r = s.apply({
      ...s.plan([s.file(s.fresh, "x\n")]),
      neutralizeOnHost: { list: `printf '%s\\n' ${quote(`${conf}\t2\tnet.core.somaxconn = 64`)}`, sourcePattern: `${quote(s.etc)}/*.conf` },
    });
    expect(r.code).toBe(19);
    expect(readFileSync(conf, "utf8")).toBe(CONF);
    expect(existsSync(s.fresh)).toBe(false);
  });
});

describe("probe: sysctl files and numbered lines", () => {
  test("the probe's sysctl sections parse (whatever this machine has in its sysctl directories)", () => {
    const s = setup();
    const r = sh(
      probeScript({ stateDir: s.stateDir, owner: "web1", sysctlKeys: ["net.core.somaxconn"], paths: [], units: [], unixPaths: [], tcpPorts: [] }, s.opts),
    );
    const rep = report(r);
    expect(rep.complete).toBe(true);
    expect(Array.isArray(rep.sysctlFiles)).toBe(true);
    for (const l of rep.sysctlLines ?? []) expect(l.key).toBe("net.core.somaxconn");
  });
});
