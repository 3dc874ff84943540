/**
 * The AWS paths without AWS: on a lab host (Debian 12, php8.2-fpm, nginx, cloud-init installed but
 * off), the user data script runs the way cloud-init runs it, the SSM document's commands the way
 * the SSM agent runs them, and real cloud-init runs the (gzipped, multipart) user data from a
 * NoCloud seed. After each run the test reads /proc/sys and `ss` itself and checks them against the
 * profile with verify.ts (expectedValues, compare): independent of the script's own verification.
 * What each service gets is converge.ts decide()'s decision taken on the host (test/unit/decisions.test.ts
 * compares the two paths case by case): here a backlog change keeps the services' processes (relisten),
 * a pm.* change reloads, and a pool removed from the profile goes back to its original.
 */
import { createHash } from "node:crypto";
import { agentScriptFile, ssmDocumentContent } from "../../src/core/aws/ssmDocument";
import { backlogUserData, encodeUserData } from "../../src/core/aws/userData";
import { type KernelValues, type ProfileInput, SOMAXCONN, TCP_MAX_SYN_BACKLOG, defineProfile } from "../../src/core/profile";
import { render, renderSysctlDropIn } from "../../src/core/render";
import { quote } from "../../src/core/shell";
import { compare, expectedValues, parseSs } from "../../src/core/verify";
import { DEBIAN_WWW, FLEET } from "../unit/fixtures";
import { Lab, requireLabMachine } from "./harness";

jest.setTimeout(300_000);

const lab = new Lab("aws");
let host = "";
/** The host's kernel values before any test touched it (the lab's defaults). */
let original: Record<string, number> = {};
/** Debian's own pool file, as the host had it before any test (the first run replaces it). */
let debianPool = "";
const POOL_DIR = "/etc/php/8.2/fpm/pool.d";

const ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8";

/** One pool behind nginx, the lab host's stack as installed. */
const A: ProfileInput = { ...DEBIAN_WWW, name: "launch" };

/** Two pools, one on TCP, two listeners, one of them IPv6. */
const B = FLEET;

beforeAll(() => {
  requireLabMachine();
  lab.up(1);
  host = lab.hosts[0]!.name;
  const [s, t] = lab.sh(host, "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog").trim().split("\n").map(Number);
  original = { [SOMAXCONN]: s!, [TCP_MAX_SYN_BACKLOG]: t! };
  debianPool = lab.sh(host, `base64 -w0 < ${POOL_DIR}/www.conf`);
});

afterAll(() => lab.down());

/** Runs a command in the host; its exit status comes back instead of failing the call. */
function run(command: string): { code: number; out: string } {
  const out = lab.sh(host, `{ ${command}\n} 2>&1; echo "@@rc=$?"`);
  const m = /@@rc=(\d+)\s*$/.exec(out);
  return { code: m ? Number(m[1]) : -1, out: out.replace(/@@rc=\d+\s*$/, "") };
}

/** Puts a file on the host (base64 on the command line: no stdin through the lab CLI). */
function put(path: string, content: string | Buffer, mode = "0644"): void {
  const b64 = Buffer.from(content).toString("base64");
  lab.sh(host, `mkdir -p "$(dirname ${quote(path)})" && printf '%s' ${quote(b64)} | base64 -d > ${quote(path)} && chmod ${mode} ${quote(path)}`);
}

/** What the host has now, read by the test itself, against what the profile says for these host values. */
function verifyHost(input: ProfileInput, own: KernelValues) {
  const out = lab.sh(host, "cat /proc/sys/net/core/somaxconn; cat /proc/sys/net/ipv4/tcp_max_syn_backlog; echo @@; ss -H -l -n -t; echo @@; ss -H -l -n -x");
  const [sysctls, tcp, unix] = out.split("@@\n");
  const [s, t] = sysctls!.trim().split("\n").map(Number);
  const rows = compare(expectedValues(defineProfile(input), own), {
    sysctls: { [SOMAXCONN]: s!, [TCP_MAX_SYN_BACKLOG]: t! },
    sockets: [...parseSs(tcp!), ...parseSs(unix!)],
  });
  return rows;
}

/** A unit that restarts nothing, to stand in for php-fpm when a socket must stay stale. */
function noopUnit(): void {
  lab.sh(host, "printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > /etc/systemd/system/pb-noop.service && systemctl daemon-reload");
}

function mainPid(unit: string): string {
  return lab.sh(host, `systemctl show -p MainPID --value ${unit}`).trim();
}

/** What a run decided for each service: its first line `UNIT: ACTION (REASONS)` (a fallback comes after it). */
function actions(out: string): Record<string, string> {
  const decided: Record<string, string> = {};
  for (const m of out.matchAll(/^pulumi-backlog: (php8\.2-fpm|nginx|pb-noop): (relisten|reload|restart) \((.*)\)$/gm)) decided[m[1]!] ??= m[2]!;
  return decided;
}

/** Send-Q of the listening sockets of a unix path or TCP port, as `ss` shows them now. */
function sendQ(selector: string): number[] {
  const out = selector.startsWith("/")
    ? lab.sh(host, `ss -H -l -n -x src ${quote(selector)}`)
    : lab.sh(host, `ss -H -l -n -t ${quote(`sport = :${selector}`)}`);
  return parseSs(out).map((x) => x.backlog);
}

describe("user data, run the way cloud-init runs it", () => {
  // cloud-init's scripts_user executes each part by path (its #! line picks the shell), as root,
  // without a terminal, in cloud-init's environment.
  const path = "/var/lib/backlog-it/scripts/part-001";

  test("applies the profile without a restart (reload, then listen again), prints the table and OK", () => {
    put(path, backlogUserData(A), "0700");
    const fpm = mainPid("php8.2-fpm");
    const nginx = mainPid("nginx");
    const r = run(`${ENV} ${path} < /dev/null`);
    // Debian's www.conf becomes the profile's: the same socket (Debian leaves listen.mode at
    // php-fpm's default, the profile spells it out) with other pm settings: reload, then the socket
    // listened again; nginx gets a new file and binds its new port itself on reload.
    expect(actions(r.out)).toEqual({ "php8.2-fpm": "reload", nginx: "reload" });
    expect(r.out).toContain(`pulumi-backlog: php8.2-fpm: reload (${POOL_DIR}/www.conf: settings other than the listen socket change)`);
    expect(r.out).toContain("nginx listen 0.0.0.0:8080 backlog: no listening socket yet: nginx opens it on reload");
    expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual([fpm, nginx]);
    expect(r.out).toMatch(/^SETTING +EXPECTED +EFFECTIVE +RESULT$/m);
    expect(r.out).toMatch(/^net\.core\.somaxconn +8192 +8192 +ok$/m);
    expect(r.out).toMatch(/^php-fpm pool www listen\.backlog \(\/run\/php\/php8\.2-fpm\.sock\) +8192 +8192 +ok$/m);
    expect(r.out).toMatch(/^nginx listen 0\.0\.0\.0:8080 backlog +8192 +8192 +ok$/m);
    expect(r.out).toContain('pulumi-backlog: OK: all 4 settings verified (/proc/sys and ss) against profile "launch"');
    expect(r.code).toBe(0);
    // The test's own reading of the host.
    const rows = verifyHost(A, original);
    expect(rows.filter((x) => !x.ok)).toEqual([]);
    expect(rows.map((x) => x.effective)).toEqual([8192, 8192, 8192, 8192]);
    // The files are render()'s, the drop-in included.
    for (const f of render(defineProfile(A))) {
      expect(lab.sh(host, `sha256sum < ${quote(f.path)} | cut -c1-64`).trim()).toBe(createHash("sha256").update(f.content).digest("hex"));
    }
  });

  test("a second run changes nothing and restarts nothing", () => {
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    const r = run(`${ENV} ${path} < /dev/null`);
    expect(r.code).toBe(0);
    expect(actions(r.out)).toEqual({});
    expect(r.out).toContain("pulumi-backlog: OK");
    expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual(pids);
  });
});

/**
 * Runs the SSM document's commands the way the SSM agent does: it writes runCommand joined with
 * newlines to <orchestration>/<step>/_script.sh and runs `sh -c <that path> ""` as root, stdout and
 * stderr to files next to it.
 */
const SSM_DIR = "/var/lib/amazon/ssm/i-0lab/document/orchestration/3f2a-it/applyAndVerifyBacklogProfile";
/** php-fpm's next start fails, once (an ExecStartPre drop-in): the restart a run needs fails. */
function failPhpFpmStartOnce(): void {
  lab.sh(
    host,
    "mkdir -p /etc/systemd/system/php8.2-fpm.service.d && printf '%s\\n' '[Service]' \"ExecStartPre=/bin/sh -c 'if [ ! -e /run/fail-once ]; then touch /run/fail-once; exit 1; fi'\" > /etc/systemd/system/php8.2-fpm.service.d/fail-once.conf && rm -f /run/fail-once && systemctl daemon-reload",
  );
}

function undoFailOnce(): void {
  lab.sh(host, "rm -rf /etc/systemd/system/php8.2-fpm.service.d /run/fail-once && systemctl daemon-reload");
}

/** The profile with pool www's listen.mode changed: a change php-fpm must restart for. */
function restartingChange(input: ProfileInput): ProfileInput {
  return { ...input, pools: input.pools!.map((p) => (p.name === "www" ? { ...p, listenMode: "0666" } : p)) };
}

function ssmRun(input: ProfileInput, options: Parameters<typeof ssmDocumentContent>[1] = {}): { code: number; stdout: string; stderr: string } {
  const dir = SSM_DIR;
  const doc = JSON.parse(ssmDocumentContent(input, options));
  put(`${dir}/_script.sh`, agentScriptFile(doc.mainSteps[0].inputs.runCommand), "0700");
  const r = run(`cd ${dir} && ${ENV} sh -c ${dir}/_script.sh '' > ${dir}/stdout 2> ${dir}/stderr < /dev/null`);
  return { code: r.code, stdout: lab.sh(host, `cat ${dir}/stdout`), stderr: lab.sh(host, `cat ${dir}/stderr`) };
}

describe("SSM document commands, run the way the SSM agent runs them", () => {
  const dir = SSM_DIR;

  test("a changed profile (a TCP pool, an IPv6 listener) is applied and verified", () => {
    const r = ssmRun(B);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain('pulumi-backlog: OK: all 6 settings verified (/proc/sys and ss) against profile "fleet"');
    expect(r.stdout).toMatch(/^php-fpm pool api listen\.backlog \(127\.0\.0\.1:9001\) +2048 +2048 +ok$/m);
    expect(r.stdout).toMatch(/^nginx listen \[::\]:8081 backlog +1024 +1024 +ok$/m);
    expect(r.stdout.length).toBeLessThan(2500); // what the SSM console shows without S3 output
    expect(r.code).toBe(0);
    const rows = verifyHost(B, original);
    expect(rows.filter((x) => !x.ok)).toEqual([]);
    expect(Object.fromEntries(rows.map((x) => [x.setting, x.effective]))).toEqual({
      "net.core.somaxconn": 16384,
      "net.ipv4.tcp_max_syn_backlog": 16384,
      "php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock)": 16384,
      "php-fpm pool api listen.backlog (127.0.0.1:9001)": 2048,
      "nginx listen 0.0.0.0:8080 backlog": 16384,
      "nginx listen [::]:8081 backlog": 1024,
    });
  });

  test("drift is repaired by the next run: the sockets that differ are listened again in place, nothing restarts", () => {
    // By hand: somaxconn lowered, php-fpm restarted, so its sockets listen with 128.
    lab.sh(host, "sysctl -w net.core.somaxconn=128 >/dev/null && systemctl restart php8.2-fpm");
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    expect(
      verifyHost(B, original)
        .filter((x) => !x.ok)
        .map((x) => x.setting),
    ).toEqual(["net.core.somaxconn", "php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock)", "php-fpm pool api listen.backlog (127.0.0.1:9001)"]);
    const r = ssmRun(B);
    expect(r.code).toBe(0);
    expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "relisten" });
    expect(r.stdout).toContain(
      "pulumi-backlog: php8.2-fpm: relisten (php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock): 128 \u2192 16384; " +
        "php-fpm pool api listen.backlog (127.0.0.1:9001): 128 \u2192 2048)",
    );
    expect(r.stdout).toMatch(/^ {2}listened socket \d+ of pid \d+ with backlog 16384$/m);
    expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual(pids);
    expect(verifyHost(B, original).filter((x) => !x.ok)).toEqual([]);
  });

  test("mode atLeast keeps a higher value set by hand, in the drop-in too, on this run and the next", () => {
    lab.sh(host, "sysctl -w net.core.somaxconn=30000 >/dev/null");
    const own = { [SOMAXCONN]: 30000, [TCP_MAX_SYN_BACKLOG]: original[TCP_MAX_SYN_BACKLOG]! };
    for (let i = 0; i < 2; i++) {
      const r = ssmRun(B);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("pulumi-backlog: net.core.somaxconn: keeping the host's 30000 (above the profile's 16384; mode atLeast)");
      expect(r.stdout).toMatch(/^net\.core\.somaxconn +30000 +30000 +ok$/m);
      expect(lab.sh(host, "cat /etc/sysctl.d/zz-pulumi-backlog.conf")).toBe(renderSysctlDropIn(defineProfile(B), { hostBefore: own }));
      expect(verifyHost(B, own).filter((x) => !x.ok)).toEqual([]);
    }
  });

  test("a value the script raised itself is lowered again when the profile is lowered", () => {
    lab.sh(host, `sysctl -w net.core.somaxconn=${16384} >/dev/null`); // the hand-raised value is gone
    expect(ssmRun(B).code).toBe(0);
    const lower: ProfileInput = { ...B, backlog: 4096, pools: [B.pools![0]!, { ...B.pools![1]!, backlog: 1024 }] };
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    const r = ssmRun(lower);
    expect(r.code).toBe(0);
    // Only backlogs and somaxconn change (the profile keeps its name, which the files' headers carry):
    // every socket is listened again with its lower value, in place.
    expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "relisten", nginx: "relisten" });
    expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual(pids);
    expect(r.stdout).toMatch(/^net\.core\.somaxconn +4096 +4096 +ok$/m);
    expect(verifyHost(lower, original).filter((x) => !x.ok)).toEqual([]);
  });

  test("a failing configuration test puts every file back and touches no service (exit 10)", () => {
    const before = lab.sh(host, "sha256sum /etc/php/8.2/fpm/pool.d/www.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf");
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    lab.sh(host, "echo 'this is not nginx syntax' > /etc/nginx/conf.d/broken.conf");
    try {
      const r = ssmRun(B);
      expect(r.code).toBe(10);
      expect(r.stdout).toContain("pulumi-backlog: FAILED: a configuration test failed; every file was put back and no service was touched:");
      expect(r.stdout).toContain("  step: test nginx");
      expect(lab.sh(host, "sha256sum /etc/php/8.2/fpm/pool.d/www.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf")).toBe(
        before,
      );
      expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual(pids);
    } finally {
      lab.sh(host, "rm -f /etc/nginx/conf.d/broken.conf");
    }
  });

  test("a failing restart puts every file and value back and starts the service again on the old files (exit 12)", () => {
    const files =
      "/etc/php/8.2/fpm/pool.d/www.conf /etc/php/8.2/fpm/pool.d/api.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf";
    const before = lab.sh(host, `sha256sum ${files}; cat /proc/sys/net/core/somaxconn`);
    const sockets = sendQ("/run/php/php8.2-fpm.sock");
    failPhpFpmStartOnce();
    try {
      const r = ssmRun({ ...restartingChange(B), backlog: 12000 });
      expect(r.code).toBe(12);
      expect(r.stdout).toContain("pulumi-backlog: php8.2-fpm: restart (");
      expect(r.stdout).toContain("pulumi-backlog: FAILED: a reload or restart failed; every file was put back and the service started again on the old files:");
      expect(r.stdout).toContain("  step: restart php8.2-fpm");
      expect(lab.sh(host, `sha256sum ${files}; cat /proc/sys/net/core/somaxconn`)).toBe(before);
      expect(lab.unitStates(host, "php8.2-fpm", "nginx")).toEqual(["active", "active"]);
      expect(sendQ("/run/php/php8.2-fpm.sock")).toEqual(sockets);
      expect(lab.sh(host, "[ -e /var/lib/pulumi-backlog/txn ] && echo open || echo none").trim()).toBe("none");
    } finally {
      undoFailOnce();
    }
    // The same run again converges.
    expect(ssmRun(B).code).toBe(0);
  });

  test("a socket the configured unit does not hold: the apply waits for the unit's own, then puts everything back (exit 12)", () => {
    // php-fpm listens with 128, and the "php-fpm unit" the script restarts is a no-op stand-in that
    // holds no socket: what a reload or restart leaves when the service did not load its files.
    noopUnit();
    lab.sh(host, "sysctl -w net.core.somaxconn=128 >/dev/null && systemctl restart php8.2-fpm");
    const before = lab.sh(host, "sha256sum /etc/php/8.2/fpm/pool.d/www.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf");
    const doc = JSON.parse(ssmDocumentContent(B, { services: { phpFpmUnit: "pb-noop" } }));
    put(`${dir}/_script.sh`, agentScriptFile(doc.mainSteps[0].inputs.runCommand), "0700");
    const r = run(`cd ${dir} && ${ENV} sh -c ${dir}/_script.sh '' < /dev/null`);
    expect(r.code).toBe(12);
    // The stand-in holds no socket (relisten impossible) and is not active: restart, which changes nothing.
    expect(actions(r.out)["pb-noop"]).toBe("restart");
    expect(r.out).toContain("pb-noop is inactive");
    expect(r.out).toContain("  step: listening");
    // Profile B's api pool (TCP 9001) is php-fpm's too: the stand-in holds neither.
    expect(r.out).toContain("after the service steps, no socket of pb-noop nginx listens on: unix /run/php/php8.2-fpm.sock, tcp 9001 (waited 10 s)");
    expect(lab.sh(host, "sha256sum /etc/php/8.2/fpm/pool.d/www.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf")).toBe(before);
    expect(lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim()).toBe("128");
    // The next run with the real unit repairs it.
    expect(ssmRun(B).code).toBe(0);
    expect(verifyHost(B, original).filter((x) => !x.ok)).toEqual([]);
  });
});

describe("decisions on the host: the SSH path's, least disruptive first", () => {
  // The host has profile B (the SSM tests end with it). The script runs the way the SSM agent runs it.
  // The same profile name: the files' headers carry it, and another name is a change beyond the backlog (reload).
  const RAISE: ProfileInput = { ...B, backlog: 20000 };

  test("a backlog-only change (somaxconn raised with it) keeps php-fpm's and nginx's processes and reaches the new backlog", () => {
    expect(ssmRun(B).code).toBe(0);
    expect(sendQ("/run/php/php8.2-fpm.sock")).toEqual([16384]);
    expect(sendQ("8080")).toEqual([16384]);
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    const workers = lab.sh(host, "pgrep -d, -f '^php-fpm: pool www'").trim();
    const r = ssmRun(RAISE);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "relisten", nginx: "relisten" });
    expect(r.stdout).toContain(
      `pulumi-backlog: php8.2-fpm: relisten (${POOL_DIR}/www.conf: only the backlog changes; ` +
        "php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock): 16384 \u2192 20000)",
    );
    expect(r.stdout).toContain(
      "pulumi-backlog: nginx: relisten (/etc/nginx/conf.d/pulumi-backlog.conf: only the backlog changes; " +
        "nginx listen 0.0.0.0:8080 backlog: 16384 \u2192 20000)",
    );
    expect(r.stdout).not.toMatch(/fallback/);
    // The same processes (master and workers), now with the new backlog: listen() ran after sysctl -p.
    expect([mainPid("php8.2-fpm"), mainPid("nginx")]).toEqual(pids);
    expect(lab.sh(host, "pgrep -d, -f '^php-fpm: pool www'").trim()).toBe(workers);
    expect(sendQ("/run/php/php8.2-fpm.sock")).toEqual([20000]);
    expect(sendQ("8080")).toEqual([20000]);
    expect(sendQ("9001")).toEqual([2048]);
    expect(r.stdout).toContain('pulumi-backlog: OK: all 6 settings verified (/proc/sys and ss) against profile "fleet"');
    expect(verifyHost(RAISE, original).filter((x) => !x.ok)).toEqual([]);
  });

  const PM: ProfileInput = { ...RAISE, pools: [{ ...B.pools![0]!, pm: { maxChildren: 9 } }, B.pools![1]!] };

  test("a pm.* change reloads php-fpm and touches nothing else", () => {
    const pm = PM;
    const nginx = mainPid("nginx");
    const r = ssmRun(pm);
    expect(r.code).toBe(0);
    expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "reload" });
    expect(r.stdout).toContain(`pulumi-backlog: php8.2-fpm: reload (${POOL_DIR}/www.conf: settings other than the listen socket change)`);
    expect(mainPid("nginx")).toBe(nginx);
    expect(lab.unitStates(host, "php8.2-fpm")).toEqual(["active"]);
    expect(verifyHost(pm, original).filter((x) => !x.ok)).toEqual([]);
  });

  test("where relisten cannot work (neither perl nor python3 on the host) each service restarts instead, saying why", () => {
    const higher: ProfileInput = { ...PM, backlog: 24000 };
    const pids = [mainPid("php8.2-fpm"), mainPid("nginx")];
    lab.sh(host, "for f in /usr/bin/perl /usr/bin/python3; do [ -e $f ] && mv $f $f.hidden; done; true");
    try {
      const r = ssmRun(higher);
      expect(r.code).toBe(0);
      expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "relisten", nginx: "relisten" });
      expect(r.stdout).toContain("pulumi-backlog: php8.2-fpm: restart (fallback: neither perl nor python3 on the host)");
      expect(r.stdout).toContain("pulumi-backlog: nginx: restart (fallback: neither perl nor python3 on the host)");
      expect(mainPid("php8.2-fpm")).not.toBe(pids[0]);
      expect(mainPid("nginx")).not.toBe(pids[1]);
      expect(sendQ("/run/php/php8.2-fpm.sock")).toEqual([24000]);
      expect(sendQ("8080")).toEqual([24000]);
      expect(verifyHost(higher, original).filter((x) => !x.ok)).toEqual([]);
    } finally {
      lab.sh(host, "for f in /usr/bin/perl /usr/bin/python3; do [ -e $f.hidden ] && mv $f.hidden $f; done; true");
    }
  });

  test("pools removed from the profile go back to their originals: Debian's www.conf byte for byte, the script's own api.conf removed", () => {
    const other: ProfileInput = {
      name: "other",
      backlog: 8192,
      pools: [{ name: "other", listen: "/run/php/other.sock" }],
      listeners: [{ listen: 8080, pool: "other" }],
    };
    const nginx = mainPid("nginx");
    const r = ssmRun(other);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`pulumi-backlog: ${POOL_DIR}/api.conf: given back as it was before the first deploy`);
    expect(r.stdout).toContain(`pulumi-backlog: ${POOL_DIR}/www.conf: given back as it was before the first deploy`);
    expect(actions(r.stdout)).toEqual({ "php8.2-fpm": "restart", nginx: "reload" });
    expect(r.stdout).toContain(
      `${POOL_DIR}/api.conf goes: its pool stops listening on restart; ${POOL_DIR}/www.conf goes: its pool stops listening on restart`,
    );
    expect(lab.sh(host, `base64 -w0 < ${POOL_DIR}/www.conf`)).toBe(debianPool);
    expect(run(`test -e ${POOL_DIR}/api.conf`).code).toBe(1);
    expect(lab.sh(host, "cat /var/lib/pulumi-backlog/owners/standalone").trim().split("\n").sort()).toEqual(
      render(defineProfile(other))
        .map((f) => f.path)
        .sort(),
    );
    // Debian's pool listens again (its own backlog), the api pool's port is closed, the new pool and
    // nginx (reloaded: same master, the [::]:8081 listener gone) have the profile's values.
    expect(sendQ("/run/php/php8.2-fpm.sock")).toHaveLength(1);
    expect(sendQ("9001")).toEqual([]);
    expect(sendQ("8081")).toEqual([]);
    expect(mainPid("nginx")).toBe(nginx);
    expect(r.stdout).toContain('pulumi-backlog: OK: all 4 settings verified (/proc/sys and ss) against profile "other"');
    expect(verifyHost(other, original).filter((x) => !x.ok)).toEqual([]);
    // A second run: nothing to give back, nothing to do.
    const again = ssmRun(other);
    expect(again.code).toBe(0);
    expect(actions(again.stdout)).toEqual({});
    expect(again.stdout).not.toContain("given back");
  });
});

describe("sysctl conflicts (issue #14): the SSH path's model, on the host", () => {
  // A later-sorted drop-in of the host's own, as found on hosts: it wins at boot and under sysctl --system.
  const LOCAL = "/etc/sysctl.d/zzzz-local.conf";
  const CONTENT = "# tuned by hand\nnet.core.somaxconn = 1024\n";
  const sha = () => lab.sh(host, `sha256sum < ${LOCAL}`).trim();
  let localSha = "";

  beforeAll(() => {
    put(LOCAL, CONTENT);
    localSha = sha();
  });

  afterAll(() => {
    lab.sh(host, `rm -f ${LOCAL}; [ ! -f /etc/sysctl.d/zz-pulumi-backlog.conf ] || sysctl -q -p /etc/sysctl.d/zz-pulumi-backlog.conf`);
  });

  test("mode report (default): each conflicting file:line is printed, the rows of boot and sysctl --system say what undoes the drop-in, the file stays, exit 0", () => {
    const r = ssmRun(B);
    expect(r.stderr).toBe("");
    const want = /sets net\.core\.somaxconn = 1024 \(the profile wants (\d+)\)/.exec(r.stdout)?.[1];
    expect(want).toBeDefined();
    expect(r.stdout).toContain(
      `pulumi-backlog: sysctl conflict: ${LOCAL}:2 sets net.core.somaxconn = 1024 (the profile wants ${want}); ` +
        'it wins over the drop-in under systemd-sysctl, sysctl --system. Left in place (conflicts: "report"); set conflicts: "neutralize" to comment it out, or change the file.',
    );
    expect(r.stdout).toMatch(new RegExp(`^net\\.core\\.somaxconn after boot \\(systemd-sysctl\\) +${want} +1024 +advisory$`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^net\\.core\\.somaxconn after sysctl --system +${want} +1024 +advisory$`, "m"));
    expect(r.stdout).toContain(`hint: systemd-sysctl would set 1024 from ${LOCAL}:2, undoing the drop-in`);
    expect(r.stdout).toContain('pulumi-backlog: OK: all 6 settings verified (/proc/sys and ss) against profile "fleet"; 2 advisory row(s)');
    expect(r.code).toBe(0);
    expect(sha()).toBe(localSha);
    // The conflict is real: sysctl --system puts 1024 back.
    lab.sh(host, "sysctl -q --system >/dev/null 2>&1 || true");
    expect(lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim()).toBe("1024");
  });

  test("mode neutralize in a run that fails at a restart: the conflicting file is put back byte for byte with the rest (exit 12)", () => {
    const files = "/etc/php/8.2/fpm/pool.d/www.conf /etc/nginx/conf.d/pulumi-backlog.conf /etc/sysctl.d/zz-pulumi-backlog.conf";
    const before = lab.sh(host, `sha256sum ${files}; cat /proc/sys/net/core/somaxconn`);
    failPhpFpmStartOnce();
    try {
      const r = ssmRun(restartingChange(B), { conflicts: "neutralize" });
      expect(r.stdout).toMatch(/sysctl conflict: .*Mode neutralize: this run comments it out/);
      expect(r.stdout).toContain("pulumi-backlog: FAILED: a reload or restart failed; every file was put back and the service started again on the old files:");
      expect(r.code).toBe(12);
      expect(sha()).toBe(localSha);
      expect(lab.sh(host, `sha256sum ${files}; cat /proc/sys/net/core/somaxconn`)).toBe(before);
      expect(lab.sh(host, "cat /var/lib/pulumi-backlog/owners/standalone")).not.toContain(LOCAL);
      expect(lab.sh(host, "[ -e /var/lib/pulumi-backlog/txn ] && echo open || echo none").trim()).toBe("none");
      expect(lab.unitStates(host, "php8.2-fpm", "nginx")).toEqual(["active", "active"]);
    } finally {
      undoFailOnce();
    }
  });

  test("mode neutralize: the line is commented out with the SSH path's marker (original kept, file owned), sysctl --system keeps the profile's value", () => {
    const r = ssmRun(B, { conflicts: "neutralize" });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(
      new RegExp(
        `^pulumi-backlog: sysctl conflict: ${LOCAL.replace(/[./]/g, "\\$&")}:2 sets net\\.core\\.somaxconn = 1024 .*Mode neutralize: this run comments it out`,
        "m",
      ),
    );
    expect(r.stdout).not.toMatch(/advisory|MISMATCH/);
    expect(r.code).toBe(0);
    expect(lab.sh(host, `sed -n 2p ${LOCAL}`).trim()).toBe(
      "# pulumi-backlog neutralized (conflicts with the drop-in; destroy puts it back): net.core.somaxconn = 1024",
    );
    expect(lab.sh(host, `sed -n 1p ${LOCAL}`).trim()).toBe("# tuned by hand");
    expect(lab.sh(host, "cat /var/lib/pulumi-backlog/owners/standalone")).toContain(LOCAL);
    expect(lab.sh(host, "grep -l -x -F /etc/sysctl.d/zzzz-local.conf /var/lib/pulumi-backlog/orig/*.path | wc -l").trim()).toBe("1");
    const want = lab.sh(host, "sed -n 's/^net.core.somaxconn = //p' /etc/sysctl.d/zz-pulumi-backlog.conf").trim();
    lab.sh(host, "echo 77 > /proc/sys/net/core/somaxconn; sysctl -q --system >/dev/null 2>&1 || true");
    expect(lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim()).toBe(want);
    // The next run in the same mode changes nothing and keeps the file.
    const again = ssmRun(B, { conflicts: "neutralize" });
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain("sysctl conflict");
    expect(again.stdout).not.toContain("given back");
    expect(lab.sh(host, "cat /var/lib/pulumi-backlog/owners/standalone")).toContain(LOCAL);
  });

  test("back to mode report: the file is given back byte for byte, and the conflict is reported again", () => {
    const r = ssmRun(B);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`pulumi-backlog: ${LOCAL}: given back as it was before the first deploy`);
    expect(sha()).toBe(localSha);
    expect(r.stdout).toContain(`pulumi-backlog: sysctl conflict: ${LOCAL}:2 sets net.core.somaxconn = 1024`);
    expect(lab.sh(host, "cat /var/lib/pulumi-backlog/owners/standalone")).not.toContain(LOCAL);
  });
});

describe("real cloud-init, offline, with a NoCloud seed", () => {
  // cloud-init 22.4 of Debian 12, run stage by stage as its systemd units do at first boot. The lab
  // image keeps it off at boot; it runs here by hand with a seed in /var/lib/cloud/seed/nocloud.
  function cloudInit(instanceId: string, userData: Buffer): { output: string; status: string; result: { errors: string[] } } {
    lab.sh(
      host,
      [
        "cloud-init clean --logs >/dev/null",
        "mkdir -p /etc/cloud/cloud.cfg.d /var/lib/cloud/seed/nocloud",
        // The NoCloud seed (this file sorts after the lab image's 99-lab.cfg, which says None), and no changes to the lab host's identity (SSH host keys, users, locale).
        "printf 'datasource_list: [ NoCloud, None ]\\nssh_deletekeys: false\\nssh_genkeytypes: []\\npreserve_hostname: true\\n" +
          "manage_etc_hosts: false\\nusers: []\\ndisable_root: false\\nlocale: false\\n' > /etc/cloud/cloud.cfg.d/99-zz-backlog-it.cfg",
        `printf 'instance-id: ${instanceId}\\nlocal-hostname: ${host}\\n' > /var/lib/cloud/seed/nocloud/meta-data`,
      ].join(" && "),
    );
    put("/var/lib/cloud/seed/nocloud/user-data", userData, "0600");
    for (const stage of ["init --local", "init", "modules --mode config", "modules --mode final"]) run(`cloud-init ${stage} > /dev/null`);
    return {
      output: lab.sh(host, "cat /var/log/cloud-init-output.log"),
      status: run("cloud-init status --long").out,
      result: JSON.parse(lab.sh(host, "cat /var/lib/cloud/data/result.json")).v1,
    };
  }

  test("gzipped multipart user data (a cloud-config of the user's, then the script): OK in cloud-init-output.log", () => {
    const preceding = "#cloud-config\nwrite_files:\n  - path: /root/preceding-part-ran\n    content: ran\n";
    const encoded = encodeUserData(backlogUserData(A, { precedingUserData: preceding }), true);
    expect(encoded.compressed).toBe(true);
    const r = cloudInit("i-0backlogit0001", Buffer.from(encoded.base64, "base64"));
    expect(lab.sh(host, "cat /root/preceding-part-ran").trim()).toBe("ran");
    expect(r.output).toMatch(/^net\.core\.somaxconn +8192 +8192 +ok$/m);
    expect(r.output).toContain('pulumi-backlog: OK: all 4 settings verified (/proc/sys and ss) against profile "launch"');
    expect(r.result.errors).toEqual([]);
    expect(r.status).not.toMatch(/status: error/);
    // Profile A after B: somaxconn was last set from a profile (not kept), so A's lower value applies.
    expect(verifyHost(A, original).filter((x) => !x.ok)).toEqual([]);
  });

  test("a failed apply makes cloud-init report an error (module scripts-user)", () => {
    // The "php-fpm unit" is a stand-in that holds no socket: the apply waits for one, then puts
    // everything back (exit 12). (A MISMATCH, exit 20, is reported the same way.)
    noopUnit();
    lab.sh(host, "sysctl -w net.core.somaxconn=128 >/dev/null && systemctl restart php8.2-fpm");
    const text = backlogUserData(A, { services: { phpFpmUnit: "pb-noop" } });
    const r = cloudInit("i-0backlogit0002", Buffer.from(text));
    expect(r.output).toContain("pulumi-backlog: FAILED: a reload or restart failed; every file was put back and the service started again on the old files:");
    expect(r.output).toContain("after the service steps, no socket of pb-noop nginx listens on: unix /run/php/php8.2-fpm.sock (waited 10 s)");
    expect(r.status).toMatch(/status: error/);
    expect(JSON.stringify(r.result.errors)).toMatch(/scripts-user|scripts_user/);
  });
});
