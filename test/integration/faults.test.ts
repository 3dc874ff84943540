/**
 * Faults made to happen on lab hosts, real engine (issues #12 and #13): each leaves the services
 * that were active active, the files all old or all new, the originals intact, and the next
 * `pulumi up` converges with verification green.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { backupName } from "../../src/core/plan";
import { Lab, type LabHost, requireLabMachine, tearDownAfterAll, testStack } from "./harness";

jest.setTimeout(600_000);

const POOL = "/etc/php/8.2/fpm/pool.d/app.conf";
const profile = (backlog: number, extra: Record<string, unknown> = {}, listeners: object[] = [{ listen: 8080, pool: "app" }]) => ({
  name: "it-faults",
  backlog,
  mode: "atLeast",
  pools: [{ name: "app", listen: "/run/php/app.sock" }],
  listeners,
  ...extra,
});

const lab = new Lab("flt");
let stack: Stack;
let remove: () => Promise<void>;
let host: LabHost;
const quiet = { onOutput: () => undefined };

beforeAll(async () => {
  requireLabMachine();
  lab.up(1);
  host = lab.hosts[0] as LabHost;
  ({ stack, remove } = await testStack("faults", { "backlog:inventory": lab.inventory, "backlog:profile": profile(5000) }));
  await stack.up(quiet);
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

const sh = (script: string) => lab.sh(host.name, script);
const active = () => lab.unitStates(host.name, "php8.2-fpm", "nginx");
const poolSum = () => sh(`sha256sum < ${POOL}`).trim();
const somaxconn = () => Number(sh("cat /proc/sys/net/core/somaxconn").trim());
const noJournal = () => sh("[ -e /var/lib/pulumi-backlog/txn ] && echo open || echo none").trim();
const setProfile = (p: object) => stack.setConfig("backlog:profile", { value: JSON.stringify(p) });
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: Error) => String(e),
  );

async function waitFor(check: () => boolean, what: string, seconds = 60): Promise<void> {
  for (let i = 0; i < seconds * 5; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("a port held by another process: the deployment fails naming it before touching anything; nginx stays up", async () => {
  sh(
    "nohup runuser -u nobody -- perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8081,Listen=>5,ReuseAddr=>1) or die; sleep 300' >/dev/null 2>&1 & sleep 1",
  );
  const before = sh("sha256sum /etc/nginx/conf.d/*.conf");
  try {
    await setProfile(
      profile(5000, {}, [
        { listen: 8080, pool: "app" },
        { listen: 8081, pool: "app" },
      ]),
    );
    const error = await failure(stack.up(quiet));
    expect(error).toMatch(/TCP port 8081 is already held by another process: pid \d+ \(perl\)/);
    expect(sh("sha256sum /etc/nginx/conf.d/*.conf")).toBe(before);
    expect(active()).toEqual(["active", "active"]);
    expect(sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/")).toBe("200");
  } finally {
    sh("pkill -u nobody perl; true");
  }
  await setProfile(profile(5000));
  await stack.up(quiet);
});

test("a port taken after the port check: nginx's reload cannot open the new listener; the apply waits for it, then puts everything back and reloads nginx on the old files (same processes)", async () => {
  const before = sh("sha256sum /etc/nginx/conf.d/*.conf");
  const pid = () => sh("systemctl show -P MainPID nginx").trim();
  const nginxPid = pid();
  sh(`touch ${JSON.stringify("/run/pulumi-backlog/pause.service nginx")}`);
  try {
    await setProfile(
      profile(5000, {}, [
        { listen: 8080, pool: "app" },
        { listen: 8082, pool: "app" },
      ]),
    );
    const up = failure(stack.up(quiet));
    try {
      await waitFor(() => sh("cat '/run/pulumi-backlog/paused.service nginx' 2>/dev/null || true").trim() !== "", "the apply to reach the nginx step");
      // The ports step found 8082 free; now another process takes it, before nginx's reload binds it.
      sh(
        "nohup runuser -u nobody -- perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8082,Listen=>5,ReuseAddr=>1) or die; sleep 300' >/dev/null 2>&1 & sleep 1",
      );
    } finally {
      sh("rm -f '/run/pulumi-backlog/pause.service nginx'");
    }
    const error = await up;
    // systemctl reload succeeded (nginx only logs the failed bind and keeps its old configuration):
    // the socket that never came is what fails the apply, inside the transaction.
    expect(error).toMatch(
      /apply failed at listening \(everything was put back\):\s*after the service steps, no socket of php8\.2-fpm nginx listens on: tcp 8082 \(waited 10 s\)/,
    );
    expect(sh("sha256sum /etc/nginx/conf.d/*.conf")).toBe(before);
    expect(noJournal()).toBe("none");
    expect(active()).toEqual(["active", "active"]);
    expect(pid()).toBe(nginxPid);
    expect(sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/")).toMatch(/^[2-5]\d\d$/);
    // Before, the files were committed and the verification failed after: nginx then refused to
    // start on them at its next restart (the port still taken). Now a restart works.
    sh("systemctl restart nginx");
    expect(active()).toEqual(["active", "active"]);
  } finally {
    sh("pkill -u nobody perl; true");
  }
  const next = await stack.up(quiet);
  expect(next.summary.result).toBe("succeeded");
  expect(sh("ss -Hlnt 'sport = :8082' | wc -l").trim()).toBe("1");
  await setProfile(profile(5000));
  await stack.up(quiet);
});

test("a full disk during apply: the write fails, everything is put back, the original stays intact", async () => {
  const old = poolSum();
  const orig = sh("cd /var/lib/pulumi-backlog/orig && sha256sum *");
  // The pool directory on a full 1 MiB tmpfs holding the current files.
  sh(
    "d=/etc/php/8.2/fpm/pool.d; cp -a $d /tmp/pool.d.keep && mount -t tmpfs -o size=1m tmpfs $d && cp -a /tmp/pool.d.keep/. $d/ && (dd if=/dev/zero of=$d/.filler bs=4k 2>/dev/null; true)",
  );
  try {
    await setProfile(profile(5000, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 7 } }] }));
    const error = await failure(stack.up(quiet));
    expect(error).toMatch(/apply failed at write .*app\.conf \(everything was put back\)/);
    expect(poolSum()).toBe(old);
    expect(sh("cd /var/lib/pulumi-backlog/orig && sha256sum *")).toBe(orig);
    expect(active()).toEqual(["active", "active"]);
    expect(noJournal()).toBe("none");
  } finally {
    sh(
      "d=/etc/php/8.2/fpm/pool.d; rm -f $d/.filler; cp -a $d/. /tmp/pool.d.now; umount $d && cp -a /tmp/pool.d.now/. $d/; rm -rf /tmp/pool.d.keep /tmp/pool.d.now",
    );
  }
  await stack.up(quiet);
  expect(sh(`grep max_children ${POOL}`)).toMatch(/= 7/);
});

test("the script killed mid-apply (power cut): the next up rolls the journal back first, then converges", async () => {
  const old = poolSum();
  sh("mkdir -p /run/pulumi-backlog && touch /run/pulumi-backlog/pause.test");
  await setProfile(profile(5500, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 6 } }] }));
  const up = failure(stack.up(quiet));
  try {
    await waitFor(() => sh("cat /run/pulumi-backlog/paused.test 2>/dev/null || true").trim() !== "", "the apply to reach its test step");
    expect(poolSum()).not.toBe(old); // the new file is in place, not yet tested or loaded
    sh("kill -9 $(cat /run/pulumi-backlog/paused.test)");
  } finally {
    sh("rm -f /run/pulumi-backlog/pause.test /run/pulumi-backlog/paused.test");
  }
  expect(await up).toMatch(/apply failed/);
  expect(noJournal()).toBe("open");
  expect(active()).toEqual(["active", "active"]);
  const next = await stack.up(quiet);
  expect(next.summary.result).toBe("succeeded");
  expect(noJournal()).toBe("none");
  expect(sh(`grep max_children ${POOL}`)).toMatch(/= 6/);
  expect(somaxconn()).toBe(5500);
});

/** Accept-queue lengths of the pool's socket and nginx's :8080, as `ss` shows them (Send-Q). */
const backlogs = () => ({
  pool: Number(sh("ss -Hlx src /run/php/app.sock | awk '{print $4}' | head -1").trim()),
  nginx: Number(sh("ss -Hlnt 'sport = :8080' | awk '{print $3}' | head -1").trim()),
});

// Every step of an apply, in order; the run is held at the step (test-only pause hook), then the
// SSH session is killed: the script notices at its next line of output and puts everything back.
const cutSteps = ["journal", `write ${backupName(POOL)}`, "test", "sysctl", "service php8.2-fpm", "service nginx", "listening", "commit"];
test.each(cutSteps.map((step, i) => [step, i]))("the connection cut at step %s: the host rolls back by itself; the next up converges", async (step, i) => {
  const before = { pool: poolSum(), somaxconn: somaxconn(), backlogs: backlogs(), orig: sh("cd /var/lib/pulumi-backlog/orig && sha256sum *") };
  const wanted = 5610 + 10 * Number(i);
  sh(`touch ${JSON.stringify("/run/pulumi-backlog/pause." + step)}`);
  await setProfile(profile(wanted, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 2 + (Number(i) % 4) } }] }));
  const up = failure(stack.up(quiet));
  try {
    await waitFor(() => sh(`cat ${JSON.stringify("/run/pulumi-backlog/paused." + step)} 2>/dev/null || true`).trim() !== "", `the apply to reach step ${step}`);
    // Cut the SSH session (its sshd process), then let the script go on: it finds no one listening.
    sh("pkill -9 -f '^sshd: root@notty' ; true");
  } finally {
    sh(`rm -f ${JSON.stringify("/run/pulumi-backlog/pause." + step)}`);
  }
  expect(await up).toMatch(/apply failed|Connection lost|connection/i);
  await waitFor(
    () => noJournal() === "none" && sh("flock -n /run/pulumi-backlog/lock true && echo free || echo busy").trim() === "free",
    "the host to roll back",
  );
  expect(poolSum()).toBe(before.pool);
  expect(somaxconn()).toBe(before.somaxconn);
  expect(backlogs()).toEqual(before.backlogs);
  expect(sh("cd /var/lib/pulumi-backlog/orig && sha256sum *")).toBe(before.orig);
  expect(active()).toEqual(["active", "active"]);
  const next = await stack.up(quiet);
  expect(next.summary.result).toBe("succeeded");
  expect(somaxconn()).toBe(wanted);
  expect(backlogs()).toEqual({ pool: wanted, nginx: wanted });
  expect(sh(`grep max_children ${POOL}`)).toMatch(new RegExp(`= ${2 + (Number(i) % 4)}`));
});

/** Parent PID of each process, from /proc. */
function parents(): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      m.set(Number(p), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  return m;
}

/** The `pulumi` CLI processes this test process started (the Automation API's children). */
function pulumiChildren(): number[] {
  return [...parents()]
    .filter(([pid, ppid]) => {
      try {
        return ppid === process.pid && /(^|\/)pulumi$/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "");
      } catch {
        return false;
      }
    })
    .map(([pid]) => pid);
}

/** Every process below `pid`. */
function descendants(pid: number): number[] {
  const all = parents();
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of all)
      if (pp === p) {
        found.push(c);
        walk(c);
      }
  };
  walk(pid);
  return found;
}

test("the pulumi process killed mid-apply (SIGKILL): the host rolls back by itself; after `pulumi cancel` the next up converges", async () => {
  const before = { pool: poolSum(), somaxconn: somaxconn(), backlogs: backlogs() };
  sh("touch /run/pulumi-backlog/pause.test");
  await setProfile(profile(5680, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 3 } }] }));
  const up = failure(stack.up(quiet));
  let orphans: number[] = [];
  try {
    await waitFor(() => sh("cat /run/pulumi-backlog/paused.test 2>/dev/null || true").trim() !== "", "the apply to reach its test step");
    const cli = pulumiChildren();
    expect(cli.length).toBe(1);
    orphans = descendants(cli[0] as number);
    process.kill(cli[0] as number, "SIGKILL");
    // The provider (left running by the killed CLI) notices the engine is gone and ends the session.
    await new Promise((r) => setTimeout(r, 8000));
  } finally {
    sh("rm -f /run/pulumi-backlog/pause.test");
  }
  expect(await up).toMatch(/./);
  await waitFor(
    () => noJournal() === "none" && sh("flock -n /run/pulumi-backlog/lock true && echo free || echo busy").trim() === "free",
    "the host's run to end",
  );
  for (const pid of orphans) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // exited by itself
    }
  }
  expect({ pool: poolSum(), somaxconn: somaxconn(), backlogs: backlogs() }).toEqual(before);
  expect(active()).toEqual(["active", "active"]);
  // The killed CLI left its stack lock: `up` refuses, naming it, until `pulumi cancel` removes it.
  expect(await failure(stack.up(quiet))).toMatch(/the stack is currently locked/);
  await stack.cancel();
  const next = await stack.up(quiet);
  expect(next.summary.result).toBe("succeeded");
  expect(somaxconn()).toBe(5680);
  expect(backlogs()).toEqual({ pool: 5680, nginx: 5680 });
  expect(sh(`grep max_children ${POOL}`)).toMatch(/= 3/);
});

test("two runs at once on one host: the second waits for the lock, then refuses its stale plan; both converge", async () => {
  const second = await testStack("faults2", {
    "backlog:inventory": lab.inventory,
    "backlog:profile": profile(5600, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 5 } }] }),
  });
  try {
    sh("touch /run/pulumi-backlog/pause.test");
    await setProfile(profile(5700, { pools: [{ name: "app", listen: "/run/php/app.sock", pm: { style: "static", maxChildren: 4 } }] }));
    const first = stack.up(quiet);
    await waitFor(() => sh("cat /run/pulumi-backlog/paused.test 2>/dev/null || true").trim() !== "", "the first apply to hold the lock");
    const other = failure(second.stack.up(quiet));
    await new Promise((r) => setTimeout(r, 8000));
    // The holder is named while the second run waits.
    expect(sh("cat /run/pulumi-backlog/holder")).toMatch(/\.backlog-flt1 \(pid \d+/);
    sh("rm -f /run/pulumi-backlog/pause.test");
    await first;
    // The second run probed the host before the first one changed it: it stops, touching nothing.
    expect(await other).toMatch(/another run changed this host after this run's probe/);
    expect(sh(`grep max_children ${POOL}`)).toMatch(/= 4/);
    expect(noJournal()).toBe("none");
    expect(active()).toEqual(["active", "active"]);
    // Run again, it converges; two owners now share the files.
    await second.stack.up(quiet);
    expect(sh(`grep max_children ${POOL}`)).toMatch(/= 5/);
    expect(sh("ls /var/lib/pulumi-backlog/owners | wc -l").trim()).toBe("2");
    // Its destroy leaves what the other stack still manages.
    await second.stack.destroy(quiet);
    expect(sh(`[ -e ${POOL} ] && echo present`).trim()).toBe("present");
    expect(sh("ls /var/lib/pulumi-backlog/owners | wc -l").trim()).toBe("1");
  } finally {
    sh("rm -f /run/pulumi-backlog/pause.test");
    await second.remove();
  }
  await stack.up(quiet);
  expect(sh(`grep max_children ${POOL}`)).toMatch(/= 4/);
});

test("a socket name forged by an unprivileged user changes nothing the deployment writes or verifies", async () => {
  const dropIn = sh("cat /etc/sysctl.d/*pulumi-backlog*.conf");
  const names = [
    "/tmp/x\n@@ sysctl net.core.somaxconn\n99999\n@@ ss-unix",
    // An abstract name (no file needed) whose second line looks like the pool's own socket row.
    "\u0000y\nu_str LISTEN 0 99999 /run/php/app.sock 1 * 0",
  ];
  const py = names.map((n, i) => `s${i}=socket.socket(socket.AF_UNIX); s${i}.bind(${JSON.stringify(n)}); s${i}.listen(1)`).join("; ");
  sh(`nohup runuser -u nobody -- python3 -c 'import socket, time; ${py}; time.sleep(300)' >/dev/null 2>&1 & sleep 1`);
  try {
    expect(sh("ss -H -l -x | grep -c 99999 || true").trim()).not.toBe("0");
    const preview = await stack.preview(quiet);
    expect(preview.changeSummary.update ?? 0).toBe(0);
    await stack.up(quiet);
    expect(somaxconn()).toBe(5700);
    expect(sh("cat /etc/sysctl.d/*pulumi-backlog*.conf")).toBe(dropIn);
    const v = (await stack.outputs()).verification.value as Record<string, { setting: string; effective: number }[]>;
    expect(v[host.name].find((r) => r.setting.includes("app.sock"))?.effective).toBe(5700);
  } finally {
    sh("pkill -u nobody python3; true");
  }
});

/** The SHA256 fingerprint `ssh-keygen -l` prints for a public key line. */
const fingerprint = (line: string) => execFileSync("ssh-keygen", ["-lf", "-"], { input: line + "\n", encoding: "utf8" }).split(/\s+/)[1];

test("a host with ed25519, ECDSA and RSA keys deploys with any one pinned, or with all ssh-keyscan prints; a wrong key names both fingerprints", async () => {
  // Give the host the other two key types a real host carries.
  sh(
    'for t in ecdsa rsa; do f=/etc/ssh/ssh_host_${t}_key; [ -f $f ] || ssh-keygen -q -N \'\' -t $t -f $f; grep -qx "HostKey $f" /etc/ssh/sshd_config || echo "HostKey $f" >> /etc/ssh/sshd_config; done; systemctl reload ssh; sleep 1',
  );
  const scan = execFileSync("ssh-keyscan", ["-p", String(host.port), "-t", "ed25519,ecdsa,rsa", host.host], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const lines = scan.split("\n").filter((l) => l && !l.startsWith("#"));
  const byType = (t: string) => {
    const l = lines.find((x) => x.split(" ")[1]?.startsWith(t));
    if (!l) throw new Error(`ssh-keyscan printed no ${t} key:\n${scan}`);
    return l.split(" ").slice(1).join(" ");
  };
  const inventory = readFileSync(lab.inventory, "utf8");
  const pin = (hostKey: string) => {
    const hosts = JSON.parse(inventory) as Record<string, unknown>[];
    hosts[0] = { ...hosts[0], hostKey };
    writeFileSync(lab.inventory, JSON.stringify(hosts, null, 2));
  };
  try {
    await setProfile(profile(5700));
    for (const [i, key] of [byType("ecdsa-sha2-"), byType("ssh-rsa"), scan, byType("ssh-ed25519")].entries()) {
      pin(key);
      await setProfile(profile(5700 + i + 1));
      const r = await stack.up(quiet);
      expect(r.summary.result).toBe("succeeded");
      expect(somaxconn()).toBe(5700 + i + 1);
    }
    // A key the host does not have: refused before anything runs, both fingerprints named.
    const dir = mkdtempSync(join(tmpdir(), "stranger-"));
    execFileSync("ssh-keygen", ["-q", "-N", "", "-t", "ed25519", "-f", join(dir, "k")]);
    const stranger = readFileSync(join(dir, "k.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
    rmSync(dir, { recursive: true, force: true });
    pin(stranger);
    await setProfile(profile(5750));
    const error = await failure(stack.up(quiet));
    expect(error).toContain(`the server presented ssh-ed25519 ${fingerprint(byType("ssh-ed25519"))}`);
    expect(error).toContain(`the pinned keys are ${fingerprint(stranger)} (ssh-ed25519)`);
    expect(error).not.toContain(stranger.split(" ")[1]);
    expect(somaxconn()).toBe(5704);
  } finally {
    writeFileSync(lab.inventory, inventory);
  }
  await setProfile(profile(5700));
  await stack.up(quiet);
});

test("a hung service restart: stopped at the step's time limit, everything put back, php-fpm active on the old files", async () => {
  const { readFileSync, writeFileSync } = await import("node:fs");
  const limited = lab.inventory.replace(/inventory\.json$/, "limited.json");
  writeFileSync(limited, JSON.stringify((JSON.parse(readFileSync(lab.inventory, "utf8")) as LabHost[]).map((e) => ({ ...e, scriptTimeoutSeconds: 45 }))));
  // php-fpm's next start hangs (once): the deploy's restart never finishes by itself.
  sh(
    "mkdir -p /etc/systemd/system/php8.2-fpm.service.d && printf '%s\\n' '[Service]' \"ExecStartPre=/bin/sh -c 'if [ ! -e /run/hung-once ]; then touch /run/hung-once; exec sleep 1000; fi'\" 'TimeoutStartSec=infinity' > /etc/systemd/system/php8.2-fpm.service.d/hang.conf && rm -f /run/hung-once && systemctl daemon-reload",
  );
  const old = poolSum();
  try {
    await stack.setConfig("backlog:inventory", { value: limited });
    // listen.mode changes: only a restart applies it.
    await setProfile(profile(5700, { pools: [{ name: "app", listen: "/run/php/app.sock", listenMode: "0666", pm: { style: "static", maxChildren: 4 } }] }));
    const started = Date.now();
    const error = await failure(stack.up(quiet));
    expect(error).toMatch(/apply failed at restart php8\.2-fpm \(everything was put back\)/);
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(poolSum()).toBe(old);
    expect(active()).toEqual(["active", "active"]);
    expect(noJournal()).toBe("none");
  } finally {
    sh("rm -rf /etc/systemd/system/php8.2-fpm.service.d /run/hung-once && systemctl daemon-reload");
  }
  await stack.up(quiet);
  expect(sh(`grep listen.mode ${POOL}`)).toMatch(/0666/);
  await stack.setConfig("backlog:inventory", { value: lab.inventory });
});

test("a renamed host (new resource name, same machine): the new one takes over, the old one's delete gives nothing back", async () => {
  const renamed = lab.inventory.replace(/inventory\.json$/, "renamed.json");
  const { writeFileSync, readFileSync } = await import("node:fs");
  const entries = JSON.parse(readFileSync(lab.inventory, "utf8")) as LabHost[];
  writeFileSync(renamed, JSON.stringify(entries.map((e) => ({ ...e, name: `${e.name}-new` }))));
  await stack.setConfig("backlog:inventory", { value: renamed });
  await stack.up(quiet);
  expect(somaxconn()).toBe(5700);
  expect(sh("ls /var/lib/pulumi-backlog/owners").trim()).toMatch(new RegExp(`\\.backlog-${host.name}-new$`));
  expect(active()).toEqual(["active", "active"]);
  await stack.up({ ...quiet, expectNoChanges: true });
  // Destroy gives back the true originals (kept by the first owner).
  await stack.destroy(quiet);
  expect(somaxconn()).toBe(4096);
  expect(sh(`[ -e ${POOL} ] && echo present || echo absent`).trim()).toBe("absent");
  expect(sh("[ -e /var/lib/pulumi-backlog ] && echo present || echo absent").trim()).toBe("absent");
});

test("a full disk during destroy: the restore fails, the state stays; the next destroy gives back the original byte for byte", async () => {
  const WWW = "/etc/php/8.2/fpm/pool.d/www.conf";
  const original = sh(`sha256sum < ${WWW}`).trim();
  await stack.setConfig("backlog:inventory", { value: lab.inventory });
  await setProfile({ name: "it-faults", backlog: 5000, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }], listeners: [] });
  await stack.up(quiet);
  expect(sh(`sha256sum < ${WWW}`).trim()).not.toBe(original);
  sh(
    "d=/etc/php/8.2/fpm/pool.d; cp -a $d /tmp/pool.d.keep && mount -t tmpfs -o size=1m tmpfs $d && cp -a /tmp/pool.d.keep/. $d/ && (dd if=/dev/zero of=$d/.filler bs=4k 2>/dev/null; true)",
  );
  try {
    const error = await failure(stack.destroy(quiet));
    expect(error).toMatch(/restore failed/);
    expect(sh("ls /var/lib/pulumi-backlog/orig | wc -l").trim()).not.toBe("0");
    expect(active()).toEqual(["active", "active"]);
  } finally {
    sh(
      "d=/etc/php/8.2/fpm/pool.d; rm -f $d/.filler; cp -a $d/. /tmp/pool.d.now; umount $d && cp -a /tmp/pool.d.now/. $d/; rm -rf /tmp/pool.d.keep /tmp/pool.d.now",
    );
  }
  await stack.destroy(quiet);
  expect(sh(`sha256sum < ${WWW}`).trim()).toBe(original);
  expect(sh("[ -e /var/lib/pulumi-backlog ] && echo present || echo absent").trim()).toBe("absent");
});
