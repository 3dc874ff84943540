/** What a host needs, decided from a profile and a probe report (no host involved). */
import { createHash } from "node:crypto";
import { type ActionNeed, bootOverrides, decide, fileChangeNeed, hostOwnValues, socketsToObserve, strongest, withoutBacklog } from "../../../src/core/converge";
import type { HostReport } from "../../../src/core/report";
import { DEBIAN_FPM_SOCKET, DEBIAN_WWW, filesOf, probeReport as report, unixSocket } from "../fixtures";
import { type BacklogProfile, defineProfile } from "../../../src/core/profile";
import { render } from "../../../src/core/render";
import type { ListeningSocket } from "../../../src/core/verify";

const OWNER = "web1";
const POOL = "/etc/php/8.2/fpm/pool.d/www.conf";
const NGINX = "/etc/nginx/conf.d/pulumi-backlog.conf";
const DROP_IN = "/etc/sysctl.d/zz-pulumi-backlog.conf";
const SOCK = DEBIAN_FPM_SOCKET;
const INPUT = DEBIAN_WWW;
const profile = defineProfile(INPUT);

const tcpSocket = (backlog: number, inode = 222, port = 8080): ListeningSocket => ({
  kind: "tcp",
  netid: null,
  recvQ: 0,
  backlog,
  local: `0.0.0.0:${port}`,
  host: "0.0.0.0",
  port,
  path: null,
  inode,
});

/** What the deploy of `p` wrote on the host (rendered for a host whose own somaxconn was 4096). */
function wantedFiles(p: BacklogProfile = profile): Record<string, string> {
  const d = decide(p, report(), { owner: OWNER });
  return Object.fromEntries(d.plan.files.map((f) => [f.path, f.content]));
}

/**
 * The report of a host on which `p` was deployed and everything took effect; `files` replaces
 * some files' contents on the host (null: absent).
 */
function converged(over: Partial<HostReport> = {}, files: Record<string, string | null> = {}, p: BacklogProfile = profile): HostReport {
  const wanted = wantedFiles(p);
  return report({
    sysctls: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    ...filesOf({ ...wanted, ...files }),
    sockets: [unixSocket(8192), tcpSocket(8192)],
    units: { "php8.2-fpm": "active", nginx: "active" },
    before: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    applied: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    managed: Object.keys(wanted),
    owners: { [OWNER]: Object.keys(wanted) },
    generation: 3,
    ...over,
  });
}

/** Per unit: the action and the sockets to listen() again as [inode, backlog, oldBacklog, label]. */
function actions(r: HostReport, p: BacklogProfile = profile) {
  const d = decide(p, r, { owner: OWNER });
  return Object.fromEntries(
    d.plan.services.map((s) => [
      s.unit,
      {
        action: s.action,
        ...(s.relisten !== undefined ? { relisten: s.relisten.map((x) => [x.inode, x.backlog, x.oldBacklog, x.label]) } : {}),
      },
    ]),
  );
}

const none = { action: "none" };

describe("decision table: the least disruptive action per service", () => {
  const wanted = wantedFiles();
  const pool = wanted[POOL]!;
  const nginx = wanted[NGINX]!;
  const withServerName = defineProfile({ ...INPUT, listeners: [{ listen: 8080, pool: "www", serverName: "example.com" }] });
  const twoPools = defineProfile({ ...INPUT, pools: [...INPUT.pools!, { name: "api", listen: "/run/php/api.sock" }] });

  test("the rendered files have the lines the table edits", () => {
    expect(pool).toContain("listen.backlog = 8192\n");
    expect(pool).toContain("pm.max_children = 5\n");
    expect(pool).toContain("listen.mode = 0660\n");
    expect(nginx).toContain("listen 0.0.0.0:8080 backlog=8192;");
    expect(wantedFiles(withServerName)[NGINX]).toMatch(/server_name example\.com;/);
  });

  test.each<[string, () => HostReport, BacklogProfile, Record<string, unknown>]>([
    [
      "backlog-only change in the pool file → php-fpm relisten with the socket's inode",
      () => converged({ sockets: [unixSocket(4096), tcpSocket(8192)] }, { [POOL]: pool.replace("listen.backlog = 8192", "listen.backlog = 4096") }),
      profile,
      { "php8.2-fpm": { action: "relisten", relisten: [[111, 8192, 4096, SOCK]] }, nginx: { action: "none" } },
    ],
    [
      "somaxconn-only change with the sockets capped by it → relisten both",
      () =>
        converged(
          {
            sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
            applied: {},
            sockets: [unixSocket(4096), tcpSocket(4096)],
          },
          { [DROP_IN]: "net.core.somaxconn = 4096\n" },
        ),
      profile,
      {
        "php8.2-fpm": { action: "relisten", relisten: [[111, 8192, 4096, SOCK]] },
        nginx: { action: "relisten", relisten: [[222, 8192, 4096, "0.0.0.0:8080"]] },
      },
    ],
    [
      "pm.* change → php-fpm reload, nothing to listen again",
      () => converged({}, { [POOL]: pool.replace("pm.max_children = 5", "pm.max_children = 10") }),
      profile,
      { "php8.2-fpm": { action: "reload", relisten: [] }, nginx: { action: "none" } },
    ],
    [
      "pm.* and backlog change, socket old → php-fpm reload, then relisten the socket",
      () =>
        converged(
          { sockets: [unixSocket(4096), tcpSocket(8192)] },
          { [POOL]: pool.replace("pm.max_children = 5", "pm.max_children = 10").replace("listen.backlog = 8192", "listen.backlog = 4096") },
        ),
      profile,
      { "php8.2-fpm": { action: "reload", relisten: [[111, 8192, 4096, SOCK]] }, nginx: { action: "none" } },
    ],
    [
      "listen.mode change → php-fpm restart",
      () => converged({}, { [POOL]: pool.replace("listen.mode = 0660", "listen.mode = 0666") }),
      profile,
      { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } },
    ],
    [
      "listen address change → php-fpm restart",
      () => converged({}, { [POOL]: pool.replace(`listen = ${SOCK}`, "listen = /run/php/old.sock") }),
      profile,
      { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } },
    ],
    [
      "new pool (file absent, no socket yet) → php-fpm reload (its re-executed master opens the new socket)",
      () => converged({}, { "/etc/php/8.2/fpm/pool.d/api.conf": null }, twoPools),
      twoPools,
      { "php8.2-fpm": { action: "reload", relisten: [] }, nginx: { action: "none" } },
    ],
    [
      "retired pool (an earlier deploy's pool file no longer in the profile) → php-fpm restart (a socket of the file given back may be the retired one's: a reload keeps it as it is)",
      () => converged({ owners: { [OWNER]: [...Object.keys(wanted), "/etc/php/8.2/fpm/pool.d/old.conf"] } }),
      profile,
      { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } },
    ],
    [
      "nginx backlog= only → nginx relisten",
      () => converged({ sockets: [unixSocket(8192), tcpSocket(4096)] }, { [NGINX]: nginx.replace("backlog=8192", "backlog=4096") }),
      profile,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "relisten", relisten: [[222, 8192, 4096, "0.0.0.0:8080"]] } },
    ],
    [
      "nginx server_name change → nginx reload",
      () => converged({}, { [NGINX]: wanted[NGINX]! }, withServerName),
      withServerName,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "reload", relisten: [] } },
    ],
    [
      "nginx file new → nginx reload",
      () => converged({}, { [NGINX]: null }),
      profile,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "reload", relisten: [] } },
    ],
    ["missing socket → restart", () => converged({ sockets: [tcpSocket(8192)] }), profile, { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } }],
    [
      "nginx listener new, its socket not there yet → nginx reload (nginx binds it)",
      () => converged({ sockets: [unixSocket(8192)] }, { [NGINX]: null }),
      profile,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "reload", relisten: [] } },
    ],
    [
      "nginx socket missing, its file as the profile has it → nginx restart",
      () => converged({ sockets: [unixSocket(8192)] }),
      profile,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "restart" } },
    ],
    [
      "the pool spells out php-fpm's default mode, the host's file leaves it out → php-fpm reload (same socket)",
      () => converged({}, { [POOL]: pool.replace("listen.mode = 0660\n", ";listen.mode = 0660\n") }),
      profile,
      { "php8.2-fpm": { action: "reload", relisten: [] }, nginx: { action: "none" } },
    ],
    [
      "unit failed → restart",
      () => converged({ units: { "php8.2-fpm": "failed", nginx: "active" } }),
      profile,
      { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } },
    ],
    [
      "unit reloading counts as running → none",
      () => converged({ units: { "php8.2-fpm": "active", nginx: "reloading" } }),
      profile,
      { "php8.2-fpm": { action: "none" }, nginx: { action: "none" } },
    ],
    [
      "relisten and restart needed at once → the strongest: restart",
      () => converged({ sockets: [unixSocket(4096), tcpSocket(8192)] }, { [POOL]: pool.replace("listen.mode = 0660", "listen.mode = 0666") }),
      profile,
      { "php8.2-fpm": { action: "restart" }, nginx: { action: "none" } },
    ],
    ["nothing → none", () => converged(), profile, { "php8.2-fpm": none, nginx: none }],
  ])("%s", (_name, host, p, expected) => {
    expect(actions(host(), p)).toEqual(expected);
  });

  test("each action says why", () => {
    const d = decide(
      profile,
      converged({ sockets: [unixSocket(4096), tcpSocket(8192)] }, { [POOL]: pool.replace("listen.backlog = 8192", "listen.backlog = 4096") }),
      { owner: OWNER },
    );
    const php = d.plan.services.find((s) => s.unit === "php8.2-fpm")!;
    expect(php.reason).toContain(`${POOL}: only the backlog changes`);
    expect(php.reason).toMatch(/4096 → 8192/);
    expect(d.plan.services.find((s) => s.unit === "nginx")!.reason).toBeUndefined();
  });

  test("the services carry the TCP ports their configuration listens on", () => {
    const d = decide(profile, converged(), { owner: OWNER });
    expect(d.plan.services.map((s) => [s.unit, s.ports])).toEqual([
      ["php8.2-fpm", []],
      ["nginx", [8080]],
    ]);
    expect(d.plan.sockets).toEqual({ unixPaths: [SOCK], tcpPorts: [8080] });
  });
});

describe("fileChangeNeed, withoutBacklog, strongest", () => {
  const pool = "[www]\nlisten = /run/a.sock\nlisten.backlog = 511\nlisten.mode = 0660\npm.max_children = 5\n";
  test.each<[string, string, "php-fpm" | "nginx", string | undefined, string]>([
    ["php-fpm: only listen.backlog", "relisten", "php-fpm", pool, pool.replace("511", "8192")],
    ["php-fpm: a listen.backlog line added", "relisten", "php-fpm", pool.replace("listen.backlog = 511\n", ""), pool],
    ["php-fpm: pm.*", "reload", "php-fpm", pool, pool.replace("pm.max_children = 5", "pm.max_children = 6")],
    ["php-fpm: listen", "restart", "php-fpm", pool, pool.replace("/run/a.sock", "/run/b.sock")],
    ["php-fpm: listen.owner added", "restart", "php-fpm", pool, pool + "listen.owner = www-data\n"],
    ["php-fpm: listen.acl_users", "restart", "php-fpm", pool, pool + "listen.acl_users = nginx\n"],
    ["php-fpm: listen.mode 0660 spelled out (php-fpm's default)", "reload", "php-fpm", pool.replace("listen.mode = 0660\n", ""), pool],
    ["php-fpm: the same socket keys in another case, form and quotes", "reload", "php-fpm", pool.replace("listen.mode = 0660", 'LISTEN.Mode = "660"'), pool],
    ["php-fpm: listen.mode 0660 → 0600", "restart", "php-fpm", pool, pool.replace("0660", "0600")],
    [
      "php-fpm: two pools in one file, one's mode spelled out",
      "restart",
      "php-fpm",
      `${pool}[b]\nlisten = /b\n`,
      `${pool}[b]\nlisten = /b\nlisten.mode = 0660\n`,
    ],
    ["php-fpm: new file", "reload", "php-fpm", undefined, pool],
    ["php-fpm: unreadable host file", "restart", "php-fpm", "\u0000", pool],
    ["nginx: backlog= only", "relisten", "nginx", "listen 80 backlog=511;\n", "listen 80 backlog=8192;\n"],
    ["nginx: server_name", "reload", "nginx", "listen 80;\nserver_name a;\n", "listen 80;\nserver_name b;\n"],
    ["nginx: listen address", "reload", "nginx", "listen 80;\n", "listen 8080;\n"],
    ["nginx: new file", "reload", "nginx", undefined, "listen 80;\n"],
  ])("%s → %s", (_name, action, service, host, wanted) => {
    expect(fileChangeNeed(service, "/etc/x.conf", host, wanted).action).toBe(action);
  });

  test("withoutBacklog drops exactly the backlog values", () => {
    expect(withoutBacklog("php-fpm", "a = 1\n  listen.backlog=5\nlisten.backlogs = 1\n")).toBe("a = 1\nlisten.backlogs = 1\n");
    expect(withoutBacklog("nginx", "listen 80 backlog=511 reuseport;\nlisten 81 backlog=1;")).toBe("listen 80 reuseport;\nlisten 81;");
  });

  test("strongest: the most disruptive action, with the reasons of that strength", () => {
    const n = (action: ActionNeed["action"], reason: string): ActionNeed => ({ action, reason });
    expect(strongest([])).toEqual({ action: "none", reason: "" });
    expect(strongest([n("relisten", "a"), n("reload", "b"), n("relisten", "c")])).toEqual({ action: "reload", reason: "b" });
    expect(strongest([n("restart", "x"), n("relisten", "a"), n("restart", "y"), n("restart", "x")])).toEqual({ action: "restart", reason: "x; y" });
  });

  test("socketsToObserve: every unix path and TCP port of pools and listeners, once, sorted", () => {
    const p = defineProfile({
      name: "s",
      backlog: 1024,
      pools: [
        { name: "b", listen: "/run/php/b.sock" },
        { name: "a", listen: "/run/php/a.sock" },
        { name: "t", listen: "127.0.0.1:9001" },
      ],
      listeners: [
        { listen: 8080, pool: "a" },
        { listen: "[::]:8080", pool: "b" },
        { listen: 80, pool: "t" },
      ],
    });
    expect(socketsToObserve(p)).toEqual({ unixPaths: ["/run/php/a.sock", "/run/php/b.sock"], tcpPorts: [80, 8080, 9001] });
  });
});

describe("decide", () => {
  test("a fresh host needs every file, a reload of php-fpm (a new pool: it opens the socket) and of nginx (it binds its new listener), and keeps its values for restore", () => {
    const d = decide(profile, report(), { owner: OWNER });
    expect(d.inSync).toBe(false);
    expect(d.plan.files.map((f) => f.path)).toEqual(render(profile).map((f) => f.path));
    expect(d.plan.services.map((s) => [s.unit, s.action])).toEqual([
      ["php8.2-fpm", "reload"],
      ["nginx", "reload"],
    ]);
    expect(d.before).toEqual({ "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 });
    expect(d.plan.stateDir).toBe("/var/lib/pulumi-backlog");
    expect(d.plan.owner).toBe(OWNER);
    expect(d.plan.generation).toBe(0);
  });

  test("the owner must be a safe name", () => {
    expect(() => decide(profile, report(), { owner: "../etc" })).toThrow(/owner/);
    expect(() => decide(profile, report(), { owner: "txn" })).toThrow(/owner/);
  });

  test("a converged host is in sync: no reasons, no service touched; the plan carries the probed generation", () => {
    const d = decide(profile, converged(), { owner: OWNER });
    expect(d.reasons).toEqual([]);
    expect(d.inSync).toBe(true);
    expect(d.plan.services.every((s) => s.action === "none")).toBe(true);
    expect(d.plan.generation).toBe(3);
  });

  test("an open journal (a run cut short) is never in sync", () => {
    const d = decide(profile, converged({ journalOpen: true }), { owner: OWNER });
    expect(d.inSync).toBe(false);
    expect(d.reasons).toEqual(["an earlier deploy on this host was cut short: it is rolled back first"]);
  });

  test("a stale socket (somaxconn right, socket old) listens again in place: only that service, no restart", () => {
    const d = decide(profile, converged({ sockets: [unixSocket(4096, 7), tcpSocket(8192)] }), { owner: OWNER });
    expect(d.inSync).toBe(false);
    expect(d.reasons.join("\n")).toMatch(/php-fpm pool www .*expected 8192, host has 4096/);
    expect(d.plan.services.map((s) => [s.unit, s.action])).toEqual([
      ["php8.2-fpm", "relisten"],
      ["nginx", "none"],
    ]);
    expect(d.plan.services[0]!.relisten).toEqual([{ inode: 7, backlog: 8192, oldBacklog: 4096, label: SOCK }]);
  });

  test("the same desired state gives the same fingerprint; another profile another one", () => {
    const a = decide(profile, converged(), { owner: OWNER });
    const b = decide(profile, converged({ sockets: [] }), { owner: OWNER });
    expect(b.desiredHash).toBe(a.desiredHash);
    const other = decide(defineProfile({ name: "web", backlog: 9000 }), converged(), { owner: OWNER });
    expect(other.desiredHash).not.toBe(a.desiredHash);
  });

  test("files this owner managed that are no longer in the profile are retired and their service restarted", () => {
    const old = "/etc/php/8.2/fpm/pool.d/old.conf";
    const d = decide(profile, converged({ owners: { [OWNER]: [...converged().owners[OWNER]!, old] } }), { owner: OWNER });
    expect(d.plan.retired).toEqual([old]);
    expect(d.plan.services.find((s) => s.unit === "php8.2-fpm")?.action).toBe("restart");
    expect(d.reasons).toContain(`${old} is no longer in the profile: its original comes back`);
  });

  test("a retired nginx file goes back to its original with a reload", () => {
    const kernelOnly = defineProfile({ name: "web", backlog: 8192 });
    const d = decide(kernelOnly, converged(), { owner: OWNER });
    expect(d.plan.retired).toEqual([NGINX, POOL].sort());
    expect(d.plan.services.map((s) => [s.unit, s.action])).toEqual([
      ["php8.2-fpm", "restart"],
      ["nginx", "reload"],
    ]);
  });

  test("the 0.1 layout (no owner records): every managed file counts as this owner's", () => {
    const old = "/etc/php/8.2/fpm/pool.d/old.conf";
    const d = decide(profile, converged({ owners: {}, managed: [...converged().managed, old] }), { owner: OWNER });
    expect(d.plan.retired).toEqual([old]);
  });

  test("files another owner manages are never retired by this one, nor are other owners' records taken for this one's", () => {
    const theirs = "/etc/php/8.2/fpm/pool.d/theirs.conf";
    const d = decide(
      profile,
      converged({
        owners: { [OWNER]: [...converged().owners[OWNER]!, theirs], "other.stack": [theirs] },
        managed: [...converged().managed, theirs],
      }),
      { owner: OWNER },
    );
    expect(d.plan.retired).toEqual([]);
    const stranger = decide(profile, converged({ owners: { "other.stack": [theirs] }, managed: [theirs] }), { owner: OWNER });
    expect(stranger.plan.retired).toEqual([]);
  });

  test("a key the host does not expose fails, naming the key and the reason", () => {
    expect(() => decide(profile, report({ sysctls: { "net.core.somaxconn": 4096 } }), { owner: OWNER })).toThrow(
      /net\.ipv4\.tcp_max_syn_backlog: not exposed in \/proc\/sys .*unprivileged user namespace/,
    );
  });

  test("a machine-global key on a container fails, naming the key and the reason", () => {
    const global = defineProfile({ name: "g", backlog: 1024, netdevMaxBacklog: { value: 5000, machineGlobal: true } });
    const r = report({ sysctls: { ...report().sysctls, "net.core.netdev_max_backlog": 1000 }, container: "systemd-nspawn" });
    expect(() => decide(global, r, { owner: "g" })).toThrow(/net\.core\.netdev_max_backlog: global to the machine.*container \(systemd-nspawn\)/);
  });

  test("a file present but too large to read back counts as changed beyond its backlog", () => {
    const big = converged();
    big.files[POOL] = createHash("sha256").update("x".repeat(70000)).digest("hex");
    delete big.contents[POOL];
    expect(actions(big)["php8.2-fpm"]).toEqual({ action: "restart" });
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
    const d = decide(profile, raised, { owner: OWNER });
    expect(d.expected.find((e) => e.setting === "net.core.somaxconn")?.expected).toBe(20000);
    expect(d.plan.hostOwn).toEqual({ "net.core.somaxconn": 20000, "net.ipv4.tcp_max_syn_backlog": 2048 });
  });
  test("mode exact sets the profile and forgets the raised value: the original is the host's own again", () => {
    const exact = defineProfile({ name: "web", backlog: 8192, mode: "exact" });
    const d = decide(exact, raised, { owner: OWNER });
    expect(d.expected.find((e) => e.setting === "net.core.somaxconn")?.expected).toBe(8192);
    expect(d.plan.hostOwn).toEqual({ "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 });
  });
});

describe("bootOverrides", () => {
  const keys = ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"];
  const dropIn = "/etc/sysctl.d/zz-pulumi-backlog.conf";
  test("files sorting before the drop-in do not override it; Debian's 99-sysctl.conf link neither", () => {
    expect(
      bootOverrides(
        [
          "/etc/sysctl.d/99-sysctl.conf:net.core.somaxconn = 1024",
          "/usr/lib/sysctl.d/50-default.conf:net.ipv4.tcp_max_syn_backlog=512",
          `${dropIn}:net.core.somaxconn = 8192`,
        ],
        dropIn,
        keys,
      ),
    ).toEqual([]);
  });
  test("a later-sorted file in any directory overrides, with slashes or dots", () => {
    expect(
      bootOverrides(["/run/sysctl.d/zzz-tuning.conf:net/core/somaxconn=65535", "/usr/lib/sysctl.d/zzzz.conf:-net.ipv4.tcp_max_syn_backlog = 1"], dropIn, keys),
    ).toEqual([
      { key: "net.core.somaxconn", file: "/run/sysctl.d/zzz-tuning.conf", line: "net/core/somaxconn=65535" },
      { key: "net.ipv4.tcp_max_syn_backlog", file: "/usr/lib/sysctl.d/zzzz.conf", line: "-net.ipv4.tcp_max_syn_backlog = 1" },
    ]);
  });
  test("a same-named file in a later directory is shadowed by the one in /etc", () => {
    expect(bootOverrides(["/etc/sysctl.d/zzz.conf:net.core.rmem_max = 1", "/usr/lib/sysctl.d/zzz.conf:net.core.somaxconn = 1"], dropIn, keys)).toEqual([]);
  });
});

describe("sysctl conflicts in decide (issue #14)", () => {
  const conf = { path: "/etc/sysctl.conf", line: 69, key: "net.core.somaxconn", value: 128, text: "net.core.somaxconn = 128" };
  const withConf = (over: Partial<HostReport> = {}) =>
    report({
      sysctlFiles: [{ path: "/etc/sysctl.d/99-sysctl.conf", target: "/etc/sysctl.conf" }, { path: "/etc/sysctl.conf" }],
      sysctlLines: [{ ...conf, path: "/etc/sysctl.d/99-sysctl.conf" }, conf],
      ...over,
    });

  it("mode report: the conflict is listed, the plan edits nothing, and advisory verification rows do not make the host out of sync", () => {
    const deployed = report({
      ...filesOf(wantedFiles()),
      sockets: [unixSocket(8192), tcpSocket(8192)],
      sysctls: { "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192 },
    });
    // Deployed: the drop-in is there too (and sorts after 99-sysctl.conf: boot keeps the profile).
    const dropInLine = { path: DROP_IN, line: 4, key: "net.core.somaxconn", value: 8192, text: "net.core.somaxconn = 8192" };
    const d = decide(
      profile,
      { ...deployed, sysctlFiles: [...withConf().sysctlFiles!, { path: DROP_IN }], sysctlLines: [...withConf().sysctlLines!, dropInLine] },
      { owner: OWNER },
    );
    expect(d.conflictMode).toBe("report");
    expect(d.conflicts).toEqual([
      expect.objectContaining({ file: "/etc/sysctl.conf", line: 69, value: 128, wanted: 8192, tools: ["sysctl --system", "sysctl -p"], via: [] }),
    ]);
    expect(d.plan.neutralize).toBeUndefined();
    const row = d.current.find((r) => r.setting === "net.core.somaxconn after sysctl --system");
    expect(row).toMatchObject({ expected: 8192, effective: 128, ok: false, advisory: true });
    expect(row?.hint).toContain("/etc/sysctl.conf:69");
    expect(d.current.find((r) => r.setting === "net.core.somaxconn after boot (systemd-sysctl)")).toMatchObject({ ok: true });
    expect(d.inSync).toBe(true);
    expect(d.changes.settings).toEqual([]);
  });

  it("mode neutralize: the real file's line is commented out in the plan (a change of its own), and the file stays this owner's on later runs", () => {
    const d = decide(profile, withConf(), { owner: OWNER, conflicts: "neutralize" });
    expect(d.plan.neutralize).toEqual([{ path: "/etc/sysctl.conf", lines: [{ line: 69, text: "net.core.somaxconn = 128" }] }]);
    expect(d.changes.files.find((f) => f.path === "/etc/sysctl.conf")?.diff).toContain("+# pulumi-backlog neutralized");
    expect(d.reasons.join("\n")).toContain(
      "/etc/sysctl.conf:69 (net.core.somaxconn = 128) undoes the drop-in under sysctl --system, sysctl -p: it is commented out",
    );
    expect(d.expected.filter((e) => e.target.kind === "persisted").every((e) => !e.advisory)).toBe(true);
    // Next run: the line is commented (the probe no longer sees it); the owner record has the file.
    const later = decide(profile, report({ owners: { [OWNER]: [DROP_IN, POOL, NGINX, "/etc/sysctl.conf"] } }), { owner: OWNER, conflicts: "neutralize" });
    expect(later.plan.neutralized).toEqual(["/etc/sysctl.conf"]);
    expect(later.plan.retired).toEqual([]);
    // Back to mode report: the file is given back like any file this owner no longer manages.
    const back = decide(profile, report({ owners: { [OWNER]: [DROP_IN, POOL, NGINX, "/etc/sysctl.conf"] } }), { owner: OWNER });
    expect(back.plan.retired).toEqual(["/etc/sysctl.conf"]);
  });

  it("a bad mode is refused naming the value", () => {
    expect(() => decide(profile, report(), { owner: OWNER, conflicts: "fix" as never })).toThrow('conflicts "fix": must be "report" or "neutralize"');
  });
});

describe("php-fpm version rules in decide", () => {
  const ondemand = defineProfile({ ...INPUT, pools: [{ name: "www", listen: SOCK, backlog: 256, pm: { style: "ondemand", maxChildren: 4 } }] });
  const poolRow = (unit: string) =>
    decide(ondemand, report({ phpUnits: { [unit]: "active" } }), { owner: OWNER }).expected.find((e) => e.setting.startsWith("php-fpm pool"));
  it.each([
    ["php7.4-fpm", 511],
    ["php8.2-fpm", 256],
    ["php8.4-fpm", 256],
  ])("%s: an ondemand pool with listen.backlog 256 is expected at %i", (unit, want) => {
    expect(poolRow(unit)?.expected).toBe(want);
  });
});
