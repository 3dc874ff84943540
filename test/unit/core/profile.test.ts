import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  type BacklogProfile,
  type ListenerInput,
  type PoolInput,
  type ProfileInput,
  DEFAULTS,
  INPUT_RULES,
  ProfileError,
  appBacklogs,
  checkProfile,
  defineProfile,
  kernelTargets,
  rules,
  toProfile,
  validateProfile,
} from "../../../src/core/profile";
import * as profileModule from "../../../src/core/profile";
import { type Draft, derive } from "../../../src/core/profile/derive";
import { CROSS_FIELD_RULE_IDS } from "../../../src/core/profile/rules";
import ruleText from "../../../src/core/profile/ruleTexts.json";
import { readInput } from "../../../src/core/profile/walk";
import { LIMITS, type Problem, Problems } from "../../../src/core/validation";
import { EXACT, KERNEL_ONLY, WEB } from "../fixtures";

const pool = (over: Record<string, unknown> = {}): PoolInput => ({ name: "app", listen: "/run/php/app.sock", ...over }) as PoolInput;
const listener = (over: Record<string, unknown> = {}): ListenerInput => ({ listen: 80, pool: "app", ...over }) as ListenerInput;
const base = (over: Record<string, unknown> = {}): ProfileInput =>
  ({ name: "web", backlog: 1024, pools: [pool()], listeners: [listener()], ...over }) as ProfileInput;

function problemsOf(input: unknown): readonly Problem[] {
  try {
    defineProfile(input as ProfileInput);
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    const err = e as ProfileError;
    expect(validateProfile(input)).toEqual(err.problems);
    return err.problems;
  }
  throw new Error("defineProfile accepted the input");
}

describe("defineProfile: derivation", () => {
  it("derives somaxconn and the SYN queue from the largest backlog", () => {
    const p = defineProfile(WEB);
    expect(p.sysctls).toEqual({ "net.core.somaxconn": 2048, "net.ipv4.tcp_max_syn_backlog": 2048 });
    expect(p.sources).toEqual({ somaxconn: "derived", tcpMaxSynBacklog: "derived" });
    expect(p.mode).toBe("atLeast");
  });

  it("gives every pool and listener its backlog and records where it came from", () => {
    const p = defineProfile(WEB);
    expect(p.pools.map((x) => [x.name, x.backlog, x.backlogSource])).toEqual([
      ["app", 1024, "profile"],
      ["api", 2048, "pool"],
    ]);
    expect(p.listeners.map((l) => [l.address, l.backlog, l.backlogSource, l.emitsBacklog])).toEqual([
      ["0.0.0.0:80", 1024, "profile", true],
      ["0.0.0.0:80", 1024, "profile", false],
      ["[::]:80", 1024, "profile", true],
      ["127.0.0.1:8080", 512, "listener", true],
    ]);
  });

  it("shares an explicit listener backlog with the other listeners of the same address", () => {
    const p = defineProfile(base({ listeners: [listener({ serverName: "a.example" }), listener({ serverName: "b.example", backlog: 300 })] }));
    expect(p.listeners.map((l) => [l.backlog, l.backlogSource, l.emitsBacklog])).toEqual([
      [300, "address", true],
      [300, "listener", false],
    ]);
  });

  it("applies Debian defaults to pools and listeners", () => {
    const p = defineProfile(base());
    const [pl] = p.pools;
    expect(pl).toMatchObject({ user: "www-data", group: "www-data", listenOwner: "www-data", listenGroup: "www-data", listenMode: "0660", extra: [] });
    expect(pl?.pm).toEqual({ style: "dynamic", maxChildren: 5, startServers: 2, minSpareServers: 1, maxSpareServers: 3, maxRequests: 0 });
    expect(p.listeners[0]).toMatchObject({ root: "/var/www/html", defaultServer: false, serverNames: [], fastcgiPass: "unix:/run/php/app.sock" });
    expect(DEFAULTS.pm.style).toBe("dynamic");
  });

  it("clamps the dynamic pm defaults to a small max_children", () => {
    const p = defineProfile(base({ pools: [pool({ pm: { maxChildren: 2 } })] }));
    expect(p.pools[0]?.pm).toEqual({ style: "dynamic", maxChildren: 2, startServers: 2, minSpareServers: 1, maxSpareServers: 2, maxRequests: 0 });
    const one = defineProfile(base({ pools: [pool({ pm: { maxChildren: 1 } })] }));
    expect(one.pools[0]?.pm).toMatchObject({ startServers: 1, minSpareServers: 1, maxSpareServers: 1 });
  });

  it("keeps overrides, exact mode and the machine-global opt-in", () => {
    const p = defineProfile(EXACT);
    expect(p.sysctls).toEqual({ "net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 16384, "net.core.netdev_max_backlog": 5000 });
    expect(p.sources).toEqual({ somaxconn: "override", tcpMaxSynBacklog: "override" });
    expect(p.pools[0]?.listen).toEqual({ kind: "tcp", endpoint: { family: "any", host: null, port: 9000 } });
    expect(p.listeners[0]?.fastcgiPass).toBe("127.0.0.1:9000");
  });

  it("does not manage netdev_max_backlog by default", () => {
    expect(Object.keys(defineProfile(KERNEL_ONLY).sysctls)).toEqual(["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"]);
  });

  it("maps TCP pools to a reachable fastcgi_pass", () => {
    const p = defineProfile(
      base({
        pools: [
          pool({ name: "a", listen: 9000 }),
          pool({ name: "b", listen: "[::]:9001" }),
          pool({ name: "c", listen: "[0:0::1]:9002" }),
          pool({ name: "d", listen: "0.0.0.0:9003" }),
        ],
        listeners: [
          listener({ pool: "a" }),
          listener({ pool: "b", serverName: "b" }),
          listener({ pool: "c", serverName: "c" }),
          listener({ pool: "d", serverName: "d" }),
        ],
      }),
    );
    expect(p.listeners.map((l) => l.fastcgiPass)).toEqual(["127.0.0.1:9000", "[::1]:9001", "[::1]:9002", "127.0.0.1:9003"]);
  });

  it("sorts extra directives by key", () => {
    const p = defineProfile(WEB);
    expect(p.pools[0]?.extra.map((d) => d.key)).toEqual(["env[PATH]", "php_admin_value[memory_limit]", "request_terminate_timeout"]);
  });

  it("returns a deeply frozen profile", () => {
    const p = defineProfile(WEB);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.sysctls)).toBe(true);
    expect(Object.isFrozen(p.pools[0]?.pm)).toBe(true);
    expect(Object.isFrozen(p.listeners[0]?.serverNames)).toBe(true);
    expect(() => {
      (p as { backlog: number }).backlog = 1;
    }).toThrow(TypeError);
  });

  it("does not mutate or keep a reference to its input", () => {
    const input = JSON.parse(JSON.stringify(WEB)) as ProfileInput;
    const copy = JSON.stringify(input);
    const p = defineProfile(input);
    expect(JSON.stringify(input)).toBe(copy);
    expect(p.pools[0]).not.toBe(input.pools?.[0]);
  });

  it("every rule passes on the fixtures", () => {
    for (const f of [WEB, KERNEL_ONLY, EXACT]) expect(checkProfile(defineProfile(f))).toEqual([]);
  });
});

describe("kernelTargets", () => {
  const p = defineProfile(WEB);
  it("uses the profile value without host values, compared with >= in atLeast mode", () => {
    expect(kernelTargets(p).map((t) => [t.key, t.value, t.comparison, t.scope])).toEqual([
      ["net.core.somaxconn", 2048, "atLeast", "netns"],
      ["net.ipv4.tcp_max_syn_backlog", 2048, "atLeast", "netns"],
    ]);
  });
  it("keeps a larger host value in atLeast mode, never a smaller one", () => {
    const t = kernelTargets(p, { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 512 });
    expect(t.map((x) => [x.value, x.keptHostValue, x.comparison])).toEqual([
      [4096, true, "equal"],
      [2048, false, "equal"],
    ]);
  });
  it("ignores host values in exact mode and flags netdev as machine-global", () => {
    const t = kernelTargets(defineProfile(EXACT), { "net.core.somaxconn": 65535 });
    expect(t.map((x) => [x.key, x.value, x.scope])).toEqual([
      ["net.core.somaxconn", 8192, "netns"],
      ["net.ipv4.tcp_max_syn_backlog", 16384, "netns"],
      ["net.core.netdev_max_backlog", 5000, "machine"],
    ]);
  });
  it("rejects garbage host values", () => {
    expect(() => kernelTargets(p, { "net.core.somaxconn": -1 })).toThrow(/hostBefore\["net.core.somaxconn"\] = -1 \[host-value\]/);
    expect(() => kernelTargets(p, { "net.core.somaxconn": Number.NaN })).toThrow(ProfileError);
    expect(() => kernelTargets(p, { "vm.swappiness": 1 } as never)).toThrow(/not a sysctl this library manages/);
  });
});

/**
 * Bad inputs: each is rejected with a problem at `path` under `rule` whose text contains
 * `text`; the error message names path, value and rule.
 */
const LONG_PATH = `/run/php/${"x".repeat(100)}.sock`;
const BAD: [string, unknown, string, string, string][] = [
  ["not an object", null, "(root)", "type", "must be an object"],
  ["an array", [], "(root)", "type", "got array"],
  ["missing name", { backlog: 1024 }, "name", "required", "is required"],
  ["missing backlog", { name: "web" }, "backlog", "required", "is required"],
  ["backlog -1", base({ backlog: -1 }), "backlog", "backlog-range", "between 1 and 65535"],
  ["backlog 0", base({ backlog: 0 }), "backlog", "backlog-range", "-1/0"],
  ["fractional backlog", base({ backlog: 511.5 }), "backlog", "backlog-range", "whole number"],
  ["backlog as string", base({ backlog: "1024" }), "backlog", "backlog-range", "must be a number, got string"],
  ["backlog NaN", base({ backlog: Number.NaN }), "backlog", "backlog-range", "whole number"],
  ["backlog Infinity", base({ backlog: Infinity }), "backlog", "backlog-range", "whole number"],
  ["backlog above 65535", base({ backlog: 70000 }), "backlog", "backlog-range", "between 1 and 65535"],
  ["somaxconn 0", base({ somaxconn: 0 }), "somaxconn", "somaxconn-range", "between 1 and 65535"],
  ["somaxconn above the cross-kernel bound", base({ somaxconn: 262144 }), "somaxconn", "somaxconn-range", "at most 65535"],
  ["somaxconn override below the profile backlog", base({ somaxconn: 512 }), "backlog", "backlog-within-somaxconn", "exceeds somaxconn 512 (override)"],
  [
    "somaxconn override below a pool backlog",
    base({ somaxconn: 1024, pools: [pool({ backlog: 2048 })] }),
    "pools[0].backlog",
    "backlog-within-somaxconn",
    "silently truncate it to 1024",
  ],
  [
    "somaxconn override below a listener backlog",
    base({ somaxconn: 1024, listeners: [listener({ backlog: 4096 })] }),
    "listeners[0].backlog",
    "backlog-within-somaxconn",
    "exceeds somaxconn 1024",
  ],
  [
    "SYN queue override below a TCP backlog",
    base({ tcpMaxSynBacklog: 128 }),
    "tcpMaxSynBacklog",
    "syn-backlog-covers-tcp",
    "below the largest TCP listener backlog 1024",
  ],
  ["SYN queue -5", base({ tcpMaxSynBacklog: -5 }), "tcpMaxSynBacklog", "syn-backlog-range", "between 1 and 2147483647"],
  ["mode typo", base({ mode: "atleast" }), "mode", "mode-value", 'must be "atLeast" or "exact"'],
  ["netdev as a bare number", base({ netdevMaxBacklog: 1000 }), "netdevMaxBacklog", "netdev-opt-in", "global to the machine"],
  ["netdev without the acknowledgement", base({ netdevMaxBacklog: { value: 1000 } }), "netdevMaxBacklog.machineGlobal", "netdev-opt-in", "must be true"],
  ["netdev 0", base({ netdevMaxBacklog: { value: 0, machineGlobal: true } }), "netdevMaxBacklog.value", "netdev-range", "between 1"],
  ["unknown top-level field", base({ somaxcon: 4096 }), "somaxcon", "unknown-field", "is not a field of the profile"],
  ["unknown pool field", base({ pools: [pool({ listen_backlog: 5 })] }), "pools[0].listen_backlog", "unknown-field", "is not a field of a pool"],
  ["pools not a list", base({ pools: { name: "app" } }), "pools", "type", "must be an array"],
  ["profile name with a newline", base({ name: "web\nnet.core.somaxconn = 1" }), "name", "safe-name", "line break"],
  ["pool name opening an ini section", base({ pools: [pool({ name: "app]\n[evil" })] }), "pools[0].name", "safe-name", "line break"],
  ["pool name with a slash", base({ pools: [pool({ name: "../etc/passwd" })] }), "pools[0].name", "safe-name", "not allowed"],
  [
    "duplicate pool names",
    base({ pools: [pool(), pool({ name: "APP", listen: "/run/php/b.sock" })] }),
    "pools[1].name",
    "unique-pool-names",
    "repeats the name of pools[0]",
  ],
  ["pool without listen", base({ pools: [{ name: "app" }] }), "pools[0].listen", "required", "is required"],
  ["relative socket path", base({ pools: [pool({ listen: "run/php/app.sock" })] }), "pools[0].listen", "safe-path", "must be an absolute path"],
  ["socket in /tmp (the incident)", base({ pools: [pool({ listen: "/tmp/php-cgi.sock" })] }), "pools[0].listen", "unix-socket-path", "PrivateTmp"],
  ["socket path too long", base({ pools: [pool({ listen: LONG_PATH })] }), "pools[0].listen", "unix-socket-path", "at most 107"],
  [
    "nginx-style unix: prefix",
    base({ pools: [pool({ listen: "unix:/run/php/app.sock" })] }),
    "pools[0].listen",
    "unix-socket-path",
    "without the nginx-style unix: prefix",
  ],
  ["socket path with a space", base({ pools: [pool({ listen: "/run/php/a b.sock" })] }), "pools[0].listen", "safe-path", "whitespace"],
  ["socket path with ..", base({ pools: [pool({ listen: "/run/php/../x.sock" })] }), "pools[0].listen", "safe-path", "no . or .. segment"],
  ["pool host name", base({ pools: [pool({ listen: "localhost:9000" })], listeners: [] }), "pools[0].listen", "listen-address", "must be an IP address"],
  ["pool port out of range", base({ pools: [pool({ listen: "127.0.0.1:99999" })], listeners: [] }), "pools[0].listen", "listen-address", "between 1 and 65535"],
  ["IPv6 without brackets", base({ pools: [pool({ listen: "::1:9000" })], listeners: [] }), "pools[0].listen", "listen-address", "needs brackets"],
  ["pool listen with a newline", base({ pools: [pool({ listen: "9000\nlisten = 1" })], listeners: [] }), "pools[0].listen", "listen-address", "line break"],
  ["pool * address", base({ pools: [pool({ listen: "*:9000" })], listeners: [] }), "pools[0].listen", "listen-address", "does not accept *"],
  ["IPv6 zone id", base({ pools: [pool({ listen: "[fe80::1%eth0]:9000" })], listeners: [] }), "pools[0].listen", "listen-address", "not a plain IPv6 address"],
  ["user with shell metacharacters", base({ pools: [pool({ user: "root;rm" })] }), "pools[0].user", "safe-account", "contains ; { or }"],
  ["upper-case group", base({ pools: [pool({ group: "WWW" })] }), "pools[0].group", "safe-account", "not allowed"],
  ["listen.owner with a newline", base({ pools: [pool({ listenOwner: "www-data\nuser = root" })] }), "pools[0].listenOwner", "safe-account", "line break"],
  ["socket mode not octal", base({ pools: [pool({ listenMode: "0999" })] }), "pools[0].listenMode", "socket-mode", "listen.mode"],
  ["socket mode as a number", base({ pools: [pool({ listenMode: 660 })] }), "pools[0].listenMode", "socket-mode", "must be a string"],
  [
    "socket owner on a TCP pool",
    base({ pools: [pool({ listen: "127.0.0.1:9000", listenOwner: "nginx" })] }),
    "pools[0].listenOwner",
    "unix-only-setting",
    "only to unix sockets",
  ],
  ["unknown pm style", base({ pools: [pool({ pm: { style: "adaptive" } })] }), "pools[0].pm.style", "pm-style", '"dynamic", "static" or "ondemand"'],
  ["pm.max_children 0", base({ pools: [pool({ pm: { maxChildren: 0 } })] }), "pools[0].pm.maxChildren", "pm-consistency", "between 1 and 65535"],
  [
    "max spare above max children",
    base({ pools: [pool({ pm: { maxChildren: 4, maxSpareServers: 6 } })] }),
    "pools[0].pm.maxSpareServers",
    "pm-consistency",
    "cannot be greater than pm.max_children (4)",
  ],
  [
    "min spare above max spare",
    base({ pools: [pool({ pm: { maxChildren: 10, minSpareServers: 5, maxSpareServers: 3 } })] }),
    "pools[0].pm.minSpareServers",
    "pm-consistency",
    "cannot be greater than pm.max_spare_servers",
  ],
  [
    "start servers outside the spare range",
    base({ pools: [pool({ pm: { maxChildren: 10, startServers: 9, minSpareServers: 1, maxSpareServers: 3 } })] }),
    "pools[0].pm.startServers",
    "pm-consistency",
    "must be between pm.min_spare_servers (1) and pm.max_spare_servers (3)",
  ],
  [
    "spare servers on a static pool",
    base({ pools: [pool({ pm: { style: "static", minSpareServers: 2 } })] }),
    "pools[0].pm.minSpareServers",
    "pm-unused-setting",
    "applies only to pm = dynamic",
  ],
  [
    "idle timeout 0",
    base({ pools: [pool({ pm: { style: "ondemand", processIdleTimeoutSeconds: 0 } })] }),
    "pools[0].pm.processIdleTimeoutSeconds",
    "pm-consistency",
    "between 1 and 86400",
  ],
  [
    "extra sets listen.backlog",
    base({ pools: [pool({ extra: { "listen.backlog": "65535" } })] }),
    'pools[0].extra["listen.backlog"]',
    "owned-directive",
    "would override a setting the profile owns",
  ],
  [
    "extra sets LISTEN.BACKLOG (case-insensitive)",
    base({ pools: [pool({ extra: { "LISTEN.BACKLOG": "-1" } })] }),
    'pools[0].extra["LISTEN.BACKLOG"]',
    "owned-directive",
    "would override",
  ],
  ["extra sets user", base({ pools: [pool({ extra: { user: "root" } })] }), 'pools[0].extra["user"]', "owned-directive", "`user` field"],
  ["extra sets listen", base({ pools: [pool({ extra: { listen: "/run/php/other.sock" } })] }), 'pools[0].extra["listen"]', "owned-directive", "`listen` field"],
  [
    "extra sets pm.max_children",
    base({ pools: [pool({ extra: { "pm.max_children": 50 } })] }),
    'pools[0].extra["pm.max_children"]',
    "owned-directive",
    "`pm` field",
  ],
  ["extra include", base({ pools: [pool({ extra: { include: "/etc/evil.conf" } })] }), 'pools[0].extra["include"]', "owned-directive", "would override"],
  [
    "extra key opening a section",
    base({ pools: [pool({ extra: { "x\n[evil]\nlisten": "1" } })] }),
    'pools[0].extra["x\\n[evil]\\nlisten"]',
    "ini-key",
    "line break",
  ],
  ["extra key with =", base({ pools: [pool({ extra: { "a=b": "1" } })] }), 'pools[0].extra["a=b"]', "ini-key", "[ ] or ="],
  [
    "extra key with a bad subkey",
    base({ pools: [pool({ extra: { "php_value[a;b]": "1" } })] }),
    'pools[0].extra["php_value[a;b]"]',
    "ini-key",
    "contains ; { or }",
  ],
  ["extra array key not php-fpm's", base({ pools: [pool({ extra: { "foo[bar]": "1" } })] }), 'pools[0].extra["foo[bar]"]', "ini-key", "env/php_value"],
  [
    "extra value with a newline",
    base({ pools: [pool({ extra: { slowlog: "/var/log/a\nlisten.backlog = 1" } })] }),
    'pools[0].extra["slowlog"]',
    "ini-value",
    "line break",
  ],
  [
    "extra value with ; comment",
    base({ pools: [pool({ extra: { slowlog: "/var/log/a ; x" } })] }),
    'pools[0].extra["slowlog"]',
    "ini-value",
    "contains ; { or }",
  ],
  [
    "extra value with a quote",
    base({ pools: [pool({ extra: { "php_admin_value[x]": 'a"b' } })] }),
    'pools[0].extra["php_admin_value[x]"]',
    "ini-value",
    "quote",
  ],
  [
    "extra value with ${} interpolation",
    base({ pools: [pool({ extra: { "env[HOME]": "${HOME}" } })] }),
    'pools[0].extra["env[HOME]"]',
    "ini-value",
    "contains ; { or }",
  ],
  ["extra value with =", base({ pools: [pool({ extra: { "php_admin_value[x]": "a=b" } })] }), 'pools[0].extra["php_admin_value[x]"]', "ini-value", "[ ] or ="],
  [
    "extra value not a string",
    base({ pools: [pool({ extra: { "php_admin_flag[x]": true } })] }),
    'pools[0].extra["php_admin_flag[x]"]',
    "ini-value",
    "string or a finite number",
  ],
  ["listener host name", base({ listeners: [listener({ listen: "example.com:80" })] }), "listeners[0].listen", "listen-address", "must be an IP address"],
  ["listener unix socket", base({ listeners: [listener({ listen: "unix:/run/nginx.sock" })] }), "listeners[0].listen", "listen-address", "not supported"],
  [
    "listener listen injection",
    base({ listeners: [listener({ listen: "80; include /etc/x" })] }),
    "listeners[0].listen",
    "listen-address",
    "contains ; { or }",
  ],
  ["listener without pool", base({ listeners: [{ listen: 80 }] }), "listeners[0].pool", "required", "is required"],
  [
    "listener naming a missing pool",
    base({ listeners: [listener({ pool: "nope" })] }),
    "listeners[0].pool",
    "listener-pool-exists",
    "names no pool of this profile (pools: app)",
  ],
  [
    "server name injection",
    base({ listeners: [listener({ serverName: "a.example; } server {" })] }),
    "listeners[0].serverName",
    "server-name",
    "contains ; { or }",
  ],
  ["server name regex", base({ listeners: [listener({ serverName: ["ok.example", "~^www.*"] })] }), "listeners[0].serverName[1]", "server-name", "not allowed"],
  [
    "server name longer than 253 characters",
    base({ listeners: [listener({ serverName: ["ok.example", `${"a".repeat(63)}.`.repeat(4)] })] }),
    "listeners[0].serverName[1]",
    "server-name",
    "the server name is 256 characters long; a DNS name has at most 253",
  ],
  [
    "server name with a label longer than 63 characters",
    base({ listeners: [listener({ serverName: `*.${"b".repeat(64)}.example` })] }),
    "listeners[0].serverName",
    "server-name",
    'a label of 64 characters ("bbbbbbbbbbbbbbbbbbbb"…); a DNS label has at most 63',
  ],
  ["document root with ;", base({ listeners: [listener({ root: "/var/www;" })] }), "listeners[0].root", "safe-path", "contains ; { or }"],
  ["relative document root", base({ listeners: [listener({ root: "www" })] }), "listeners[0].root", "safe-path", "must be an absolute path"],
  ["defaultServer not boolean", base({ listeners: [listener({ defaultServer: "yes" })] }), "listeners[0].defaultServer", "type", "true or false"],
  ["listener backlog 0", base({ listeners: [listener({ backlog: 0 })] }), "listeners[0].backlog", "backlog-range", "between 1 and 65535"],
  [
    "conflicting backlogs on one nginx address",
    base({ listeners: [listener({ backlog: 512, serverName: "a" }), listener({ listen: "*:80", backlog: 1024, serverName: "b" })] }),
    "listeners[1].backlog",
    "nginx-backlog-once",
    "conflicts with listeners[0] on the same address 0.0.0.0:80",
  ],
  [
    "two default servers on one address",
    base({ listeners: [listener({ defaultServer: true, serverName: "a" }), listener({ defaultServer: true, serverName: "b" })] }),
    "listeners[1].defaultServer",
    "nginx-default-server-once",
    "already the default server for 0.0.0.0:80",
  ],
  [
    "a server name twice on one address",
    base({ listeners: [listener({ serverName: "a.example" }), listener({ serverName: ["b.example", "A.example"] })] }),
    "listeners[1].serverName[1]",
    "nginx-server-name-unique",
    "already served on 0.0.0.0:80 by listeners[0]",
  ],
  [
    "nginx wildcard and specific address on one port",
    base({ listeners: [listener(), listener({ listen: "127.0.0.1:80" })] }),
    "listeners[1].listen",
    "nginx-address-overlap",
    "overlaps listeners[0].listen (0.0.0.0:80)",
  ],
  [
    "pool and nginx on the same TCP port",
    base({ pools: [pool({ listen: "127.0.0.1:8080" })], listeners: [listener({ listen: 8080 })] }),
    "listeners[0].listen",
    "unique-sockets",
    "binds the same socket as pool app",
  ],
  ["two pools on one unix socket", base({ pools: [pool(), pool({ name: "b" })] }), "pools[1].listen", "unique-sockets", "binds the same socket as pool app"],
  [
    "dual-stack pool port and an IPv4 pool port",
    base({ pools: [pool({ listen: 9000 }), pool({ name: "b", listen: "127.0.0.1:9000" })], listeners: [] }),
    "pools[1].listen",
    "unique-sockets",
    "binds the same socket",
  ],
];

describe("defineProfile rejects bad input with a specific message", () => {
  it("has at least 30 distinct bad inputs", () => {
    expect(new Set(BAD.map((b) => b[0])).size).toBe(BAD.length);
    expect(BAD.length).toBeGreaterThanOrEqual(30);
  });

  it.each(BAD)("%s", (_name, input, path, rule, text) => {
    const problems = problemsOf(input);
    const hit = problems.find((p) => p.path === path && p.rule === rule);
    if (!hit) throw new Error(`no ${rule} problem at ${path}; got:\n${problems.map((p) => `${p.path} [${p.rule}] ${p.message}`).join("\n")}`);
    expect(`${hit.message} ${hit.fix}`).toContain(text);
    expect(hit.fix.length).toBeGreaterThan(5);
    let message = "";
    try {
      defineProfile(input as ProfileInput);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain(`${path} = `);
    expect(message).toContain(`[${rule}]`);
    expect(message).toContain("fix: ");
  });
});

describe("validation collects every problem at once", () => {
  it("reports field problems of several items and cross-field rules together", () => {
    const problems = problemsOf({
      name: "web",
      backlog: 4096,
      somaxconn: 1024,
      mode: "fast",
      pools: [
        pool({ user: "Root" }),
        pool({ name: "b", listen: "/tmp/b.sock" }),
        pool({ name: "c", listen: "/run/php/c.sock", backlog: 8192, extra: { "listen.mode": "0777" } }),
      ],
      listeners: [listener({ serverName: "bad name" }), listener({ pool: "b", serverName: "b.example" }), listener({ pool: "c", listen: "127.0.0.1:80" })],
    });
    expect(problems.map((p) => `${p.path} ${p.rule}`)).toEqual([
      "mode mode-value",
      "pools[0].user safe-account",
      "pools[1].listen unix-socket-path",
      'pools[2].extra["listen.mode"] owned-directive',
      "listeners[0].serverName server-name",
      "backlog backlog-within-somaxconn",
      "pools[2].backlog backlog-within-somaxconn",
      "listeners[2].listen nginx-address-overlap",
    ]);
  });

  it("names the profile and counts problems in the message", () => {
    expect(() => defineProfile(base({ backlog: 0, somaxconn: -1 }))).toThrow(
      /^Invalid backlog profile "web": 2 problems\n {2}1\. backlog = 0 \[backlog-range\]/,
    );
  });

  it("validateProfile returns [] for good input", () => {
    expect(validateProfile(WEB)).toEqual([]);
  });
});

describe("rules", () => {
  it("have unique ids, descriptions and reasons", () => {
    expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
    // The texts are data (ruleTexts.json): one entry per rule, no text without its rule.
    expect(Object.keys(ruleText).sort()).toEqual(rules.map((r) => r.id).sort());
    for (const r of rules) expect({ description: r.description, reason: r.reason }).toEqual(ruleText[r.id as keyof typeof ruleText]);
    for (const r of rules) {
      expect(r.id).toMatch(/^[a-z][a-z0-9-]+$/);
      expect(r.description.length).toBeGreaterThan(10);
      expect(r.reason.length).toBeGreaterThan(10);
    }
  });

  it("catch a hand-edited profile (as the policy pack sees it)", () => {
    const good = defineProfile(WEB);
    const edited = JSON.parse(JSON.stringify(good)) as BacklogProfile & Record<string, never>;
    (edited.sysctls as { "net.core.somaxconn": number })["net.core.somaxconn"] = 100;
    (edited.sysctls as { "net.ipv4.tcp_max_syn_backlog": number })["net.ipv4.tcp_max_syn_backlog"] = 100;
    (edited.sources as { tcpMaxSynBacklog: string }).tcpMaxSynBacklog = "override";
    (edited.pools[0] as { backlog: number }).backlog = -1;
    (edited.pools[0]!.extra as { key: string; value: string }[]).push({ key: "listen.backlog", value: "-1" });
    (edited.listeners[1] as { emitsBacklog: boolean }).emitsBacklog = true;
    (edited.listeners[0] as { fastcgiPass: string }).fastcgiPass = "unix:/tmp/other.sock";
    const ids = new Set(checkProfile(edited).map((p) => p.rule));
    for (const id of [
      "backlog-within-somaxconn",
      "backlog-range",
      "owned-directive",
      "nginx-backlog-once",
      "listener-pool-exists",
      "derived-consistency",
      "syn-backlog-covers-tcp",
    ]) {
      expect(ids).toContain(id);
    }
  });

  it("are all documented in docs/profile.md, with the input-only ids", () => {
    const doc = readFileSync(join(__dirname, "..", "..", "..", "docs", "profile.md"), "utf8");
    for (const id of [...rules.map((r) => r.id), ...Object.keys(INPUT_RULES)]) expect(doc).toContain(`\`${id}\``);
  });

  it("every problem id used by validation is a rule or an input rule", () => {
    const known = new Set([...rules.map((r) => r.id), ...Object.keys(INPUT_RULES)]);
    for (const [, input] of BAD) for (const p of validateProfile(input)) expect(known).toContain(p.rule);
  });

  describe("server-name: DNS limits (253 characters, labels of 63)", () => {
    const label = (c: string) => c.repeat(63);
    /** 253 characters: four labels of 63 and a dot between each, minus two. */
    const longest = `${label("a")}.${label("b")}.${label("c")}.${"d".repeat(61)}`;

    it("accepts the wildcard forms nginx has and names at the limits", () => {
      expect(longest).toHaveLength(253);
      const names = ["example.com", "*.example.com", ".example.com", "example.*", "_", longest, `*.${label("e")}.example`, `.${label("f")}`, `${label("g")}.*`];
      const p = defineProfile(base({ listeners: [listener({ serverName: names })] }));
      expect(p.listeners[0]!.serverNames).toEqual(names);
      expect(checkProfile(p)).toEqual([]);
    });

    it("refuses a longer name or label, naming the path, the value (cut) and the rule", () => {
      let message = "";
      try {
        defineProfile(base({ listeners: [listener({ serverName: ["ok.example", `${longest}x`, `${label("h")}h.example`] })] }));
      } catch (e) {
        message = (e as Error).message;
      }
      const lines = message.split("\n");
      const tooLong = lines.find((l) => l.includes("listeners[0].serverName[1] = "))!;
      expect(tooLong).toContain(`listeners[0].serverName[1] = "${"a".repeat(63)}.bbbbbbbbbbbbbb…"`);
      expect(tooLong).toContain('…" [server-name] the server name is 254 characters long; a DNS name has at most 253');
      expect(tooLong.length).toBeLessThan(250);
      const longLabel = lines.find((l) => l.includes("listeners[0].serverName[2] = "))!;
      expect(longLabel).toContain("[server-name] the server name has a label of 64 characters");
    });

    it("the rule catches them in a hand-edited profile (as the policy pack sees it)", () => {
      const edited = JSON.parse(JSON.stringify(defineProfile(base({ listeners: [listener({ serverName: ["ok.example", "x.example", "y.example"] })] }))));
      edited.listeners[0].serverNames[1] = `${longest}.x`;
      edited.listeners[0].serverNames[2] = `${label("i")}i.example`;
      const rule = rules.find((r) => r.id === "server-name")!;
      expect(rule.check(edited).map((p) => `${p.path} ${p.rule} ${p.message}`)).toEqual([
        "listeners[0].serverName[1] server-name the server name is 255 characters long; a DNS name has at most 253",
        'listeners[0].serverName[2] server-name the server name has a label of 64 characters ("iiiiiiiiiiiiiiiiiiii"…); a DNS label has at most 63',
      ]);
      expect(checkProfile(edited).filter((p) => p.rule === "server-name")).toHaveLength(2);
    });
  });

  it("each rule can be run on its own", () => {
    const p = defineProfile(WEB);
    for (const r of rules) expect(r.check(p)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------
// Property-based tests

const accounts = fc.constantFrom("www-data", "app", "_php", "nginx");
const backlogArb = fc.integer({ min: 1, max: 65535 });
/** Mostly valid, sometimes broken numbers. */
const numberish = fc.oneof(
  { weight: 8, arbitrary: backlogArb },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 65536, 1.5, Number.NaN, "512" as unknown as number) },
);
const listenArb = fc.oneof(
  fc.constantFrom("/run/php/a.sock", "/run/php/b.sock", "/run/php/c.sock", "/tmp/x.sock"),
  fc.integer({ min: 9000, max: 9004 }),
  fc.constantFrom("127.0.0.1:9000", "127.0.0.1:9001", "[::1]:9002", "0.0.0.0:9003", "[::]:9004", "localhost:9000"),
);
const poolArb = fc.record(
  {
    name: fc.constantFrom("a", "b", "c", "d", "bad name"),
    listen: listenArb,
    backlog: numberish,
    user: accounts,
    listenMode: fc.constantFrom("0660", "660", "0600"),
    pm: fc.record({ style: fc.constantFrom("dynamic", "static", "ondemand"), maxChildren: fc.integer({ min: 1, max: 50 }) }, { requiredKeys: [] }),
    extra: fc.dictionary(
      fc.constantFrom("request_terminate_timeout", "php_admin_value[memory_limit]", "listen.backlog", "env[TMP]"),
      fc.constantFrom("30s", "128M", "/tmp", "a;b"),
    ),
  },
  { requiredKeys: ["name", "listen"] },
);
const listenerArb = fc.record(
  {
    listen: fc.constantFrom<string | number>(80, "*:80", "0.0.0.0:80", "[::]:80", "127.0.0.1:8080", "[::1]:8080", 8443, "127.0.0.1:80"),
    backlog: numberish,
    serverName: fc.constantFrom("a.example", "b.example", "*.c.example", "_"),
    pool: fc.constantFrom("a", "b", "c", "d"),
    defaultServer: fc.boolean(),
  },
  { requiredKeys: ["listen", "pool"] },
);
const inputArb = fc.record(
  {
    name: fc.constantFrom("web", "edge-1"),
    backlog: numberish,
    somaxconn: numberish,
    tcpMaxSynBacklog: numberish,
    mode: fc.constantFrom("atLeast", "exact"),
    pools: fc.array(poolArb, { maxLength: 4 }),
    listeners: fc.array(listenerArb, { maxLength: 4 }),
  },
  { requiredKeys: ["name", "backlog"] },
);

/** Inputs built only from valid parts: unique pools and sockets, agreeing nginx backlogs. */
const NGINX_ADDRESSES = ["0.0.0.0:80", "[::]:80", "127.0.0.1:8080", "[::1]:8080", "*:8443"];
const validInputArb: fc.Arbitrary<ProfileInput> = fc
  .record({
    backlog: backlogArb,
    mode: fc.constantFrom<"atLeast" | "exact">("atLeast", "exact"),
    pools: fc.uniqueArray(fc.record({ id: fc.integer({ min: 0, max: 5 }), tcp: fc.boolean(), backlog: fc.option(backlogArb, { nil: undefined }) }), {
      selector: (p) => p.id,
      maxLength: 4,
    }),
    listeners: fc.array(
      fc.record({ addr: fc.integer({ min: 0, max: NGINX_ADDRESSES.length - 1 }), pool: fc.nat(), backlog: fc.option(backlogArb, { nil: undefined }) }),
      { maxLength: 5 },
    ),
  })
  .map(({ backlog, mode, pools, listeners }) => {
    const explicit = new Map<number, number>();
    return {
      name: "gen",
      backlog,
      mode,
      pools: pools.map((p) => ({
        name: `p${p.id}`,
        listen: p.tcp ? `127.0.0.1:${9000 + p.id}` : `/run/php/p${p.id}.sock`,
        ...(p.backlog === undefined ? {} : { backlog: p.backlog }),
      })),
      listeners:
        pools.length === 0
          ? []
          : listeners.map((l, j) => {
              let b = l.backlog;
              if (b !== undefined) {
                if (explicit.has(l.addr)) b = explicit.get(l.addr);
                else explicit.set(l.addr, b);
              }
              return {
                listen: NGINX_ADDRESSES[l.addr] as string,
                pool: `p${(pools[l.pool % pools.length] as { id: number }).id}`,
                serverName: `s${j}.example`,
                ...(b === undefined ? {} : { backlog: b }),
              };
            }),
    };
  });

function tryDefine(input: unknown): BacklogProfile | ProfileError {
  try {
    return defineProfile(input as ProfileInput);
  } catch (e) {
    if (e instanceof ProfileError) return e;
    throw e;
  }
}

describe("properties", () => {
  it("every accepted input yields a profile that satisfies every rule", () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          inputArb,
          validInputArb,
          validInputArb.chain((v) => fc.record({ somaxconn: numberish, tcpMaxSynBacklog: numberish }, { requiredKeys: [] }).map((o) => ({ ...v, ...o }))),
        ),
        (input) => {
          const r = tryDefine(input);
          if (r instanceof ProfileError) {
            expect(r.problems.length).toBeGreaterThan(0);
            return;
          }
          accepted++;
          expect(checkProfile(r)).toEqual([]);
          const somaxconn = r.sysctls["net.core.somaxconn"];
          const syn = r.sysctls["net.ipv4.tcp_max_syn_backlog"];
          expect(somaxconn).toBeGreaterThanOrEqual(LIMITS.somaxconn.min);
          expect(somaxconn).toBeLessThanOrEqual(LIMITS.somaxconn.max);
          for (const a of appBacklogs(r)) {
            expect(Number.isInteger(a.backlog)).toBe(true);
            expect(a.backlog).toBeGreaterThanOrEqual(1);
            expect(a.backlog).toBeLessThanOrEqual(somaxconn);
            if (a.transport === "tcp") expect(syn).toBeGreaterThanOrEqual(a.backlog);
          }
          const emitters = new Map<string, number>();
          for (const l of r.listeners) if (l.emitsBacklog) emitters.set(l.address, (emitters.get(l.address) ?? 0) + 1);
          expect([...emitters.values()].every((n) => n === 1)).toBe(true);
          expect(new Set(r.listeners.map((l) => l.address)).size).toBe(emitters.size);
          expect(Object.isFrozen(r)).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it("without overrides, somaxconn is the largest backlog and the SYN queue follows it", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const { somaxconn: _s, tcpMaxSynBacklog: _t, ...rest } = input as Record<string, unknown>;
        const r = tryDefine(rest);
        if (r instanceof ProfileError) return;
        const largest = Math.max(r.backlog, ...appBacklogs(r).map((a) => a.backlog));
        expect(r.sysctls["net.core.somaxconn"]).toBe(largest);
        expect(r.sysctls["net.ipv4.tcp_max_syn_backlog"]).toBe(largest);
      }),
      { numRuns: 200 },
    );
  });

  it("generated valid inputs are always accepted", () => {
    fc.assert(
      fc.property(validInputArb, (input) => {
        expect(validateProfile(input)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("a somaxconn override below any application backlog is always rejected", () => {
    fc.assert(
      fc.property(validInputArb, fc.double({ min: 0, max: 1, noNaN: true }), (input, f) => {
        const largest = defineProfile(input).sysctls["net.core.somaxconn"];
        fc.pre(largest > 1);
        const override = 1 + Math.floor(f * (largest - 2));
        const r = tryDefine({ ...input, somaxconn: override });
        expect(r).toBeInstanceOf(ProfileError);
        expect((r as ProfileError).problems.some((x) => x.rule === "backlog-within-somaxconn")).toBe(true);
        expect((r as ProfileError).message).toContain("(override)");
      }),
      { numRuns: 300 },
    );
  });

  it("a SYN-queue override below a TCP listener backlog is always rejected", () => {
    fc.assert(
      fc.property(validInputArb, fc.double({ min: 0, max: 1, noNaN: true }), (input, f) => {
        const tcp = appBacklogs(defineProfile(input))
          .filter((a) => a.transport === "tcp")
          .map((a) => a.backlog);
        fc.pre(tcp.length > 0 && Math.max(...tcp) > 1);
        const override = 1 + Math.floor(f * (Math.max(...tcp) - 2));
        const r = tryDefine({ ...input, tcpMaxSynBacklog: override });
        expect(r).toBeInstanceOf(ProfileError);
        expect((r as ProfileError).problems.map((x) => x.rule)).toEqual(["syn-backlog-covers-tcp"]);
      }),
      { numRuns: 300 },
    );
  });

  it("an explicit app backlog above a somaxconn override is always rejected at its path", () => {
    fc.assert(
      fc.property(validInputArb, fc.nat(), fc.integer({ min: 1, max: 1000 }), (input, pick, over) => {
        const items = [...(input.pools ?? []).map((_p, i) => `pools[${i}]`), ...(input.listeners ?? []).map((_l, i) => `listeners[${i}]`)];
        fc.pre(items.length > 0);
        const somaxconn = defineProfile(input).sysctls["net.core.somaxconn"];
        fc.pre(somaxconn + over <= 65535);
        const target = items[pick % items.length] as string;
        const [list, idx] = [target.startsWith("pools") ? "pools" : "listeners", Number(/\d+/.exec(target)?.[0])] as const;
        const copy = JSON.parse(JSON.stringify(input)) as Record<string, Record<string, unknown>[]>;
        (copy[list] as Record<string, unknown>[])[idx] = { ...(copy[list] as Record<string, unknown>[])[idx], backlog: somaxconn + over };
        // Other listeners of the same nginx address must agree, so give them the same value.
        if (list === "listeners") {
          const addr = (copy.listeners as Record<string, unknown>[])[idx]?.listen;
          for (const l of copy.listeners as Record<string, unknown>[]) if (l.listen === addr) l.backlog = somaxconn + over;
        }
        const r = tryDefine({ ...copy, somaxconn });
        expect(r).toBeInstanceOf(ProfileError);
        const hit = (r as ProfileError).problems.find((x) => x.rule === "backlog-within-somaxconn");
        expect(hit?.path).toMatch(/^(pools|listeners)\[\d+\]\.backlog$/);
      }),
      { numRuns: 300 },
    );
  });

  it("an override that keeps every rule is accepted unchanged", () => {
    fc.assert(
      fc.property(validInputArb, fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 100000 }), (input, extra, synExtra) => {
        const want = Math.min(65535, defineProfile(input).sysctls["net.core.somaxconn"] + extra);
        const syn = want + synExtra;
        const r = defineProfile({ ...input, somaxconn: want, tcpMaxSynBacklog: syn });
        expect(r.sysctls).toMatchObject({ "net.core.somaxconn": want, "net.ipv4.tcp_max_syn_backlog": syn });
        expect(r.sources).toEqual({ somaxconn: "override", tcpMaxSynBacklog: "override" });
      }),
      { numRuns: 200 },
    );
  });

  it("arbitrary strings in string fields are rejected or pass the strict patterns", () => {
    const nasty = fc.oneof(
      fc.string({ unit: "binary-ascii", maxLength: 20 }),
      fc.constantFrom("a\n[b]", "x;y", "a b", "{", "${x}", '"', "www-data", "ok.name"),
    );
    fc.assert(
      fc.property(nasty, nasty, nasty, nasty, (name, user, server, value) => {
        const r = tryDefine(
          base({
            pools: [pool({ name, user, extra: { "php_admin_value[x]": value } })],
            listeners: [listener({ pool: name, serverName: server })],
          }),
        );
        if (r instanceof ProfileError) return;
        const text = [r.pools[0]?.name, r.pools[0]?.user, r.listeners[0]?.serverNames[0], r.pools[0]?.extra[0]?.value].join("");
        expect(text).not.toMatch(/[\n\r;{}"'`$\\=]/);
      }),
      { numRuns: 400 },
    );
  });
});

describe("toProfile", () => {
  it("takes a profile defineProfile made as it is", () => {
    const p = defineProfile({ name: "web", backlog: 1024 });
    expect(toProfile(p)).toBe(p);
  });

  it("never takes a hand-made object shaped like a derived profile for a checked one", () => {
    const made = defineProfile({ name: "web", backlog: 1024, pools: [{ name: "app", listen: "/run/php/app.sock" }] });
    const forged = Object.freeze({ ...made, pools: [{ ...made.pools[0], backlog: 0 }] });
    expect(() => toProfile(forged)).toThrow(ProfileError);
  });
});

describe("each check runs once (issue #16)", () => {
  /** The walker's problems and the profile derived from its draft (draft indexes). */
  function walk(input: unknown): { problems: readonly Problem[]; draft: Draft; profile: BacklogProfile } | undefined {
    const problems = new Problems();
    const draft = readInput(problems, input);
    if (draft?.backlog === undefined) return undefined;
    return { problems: problems.all, draft, profile: derive({ ...draft, backlog: draft.backlog }) };
  }

  it("the rules defineProfile does not run again cannot fire on a profile derived from the walker's draft", () => {
    let derived = 0;
    fc.assert(
      fc.property(fc.oneof(inputArb, validInputArb), (input) => {
        const w = walk(input);
        if (w === undefined) return;
        derived++;
        const toInput = (path: string) => path.replace(/^pools\[(\d+)\]/, (_m, k: string) => `pools[${w.draft.pools[Number(k)]?.index}]`);
        const walked = new Set([...w.problems, ...w.draft.pools.flatMap((p) => p.pmFollowUp)].map((p) => `${p.path} ${p.rule}`));
        for (const r of rules.filter((x) => !CROSS_FIELD_RULE_IDS.includes(x.id))) {
          // pm-consistency is the one field rule the walker also runs: on the input, or as a follow-up.
          const found = r.check(w.profile).filter((p) => r.id !== "pm-consistency" || !walked.has(`${toInput(p.path)} ${p.rule}`));
          expect(found).toEqual([]);
        }
      }),
      { numRuns: 400 },
    );
    expect(derived).toBeGreaterThan(100);
  });

  it("every cross-field rule is a rule, and validateProfile reports its problems at input indexes", () => {
    for (const id of CROSS_FIELD_RULE_IDS) expect(rules.map((r) => r.id)).toContain(id);
    const problems = problemsOf(
      base({
        pools: [pool({ name: "bad name" }), pool(), pool({ name: "b", listen: "/run/php/app.sock" })],
        listeners: [listener({ pool: "b", serverName: "a.example" }), listener({ serverName: "a.example" })],
      }),
    );
    expect(problems.map((p) => `${p.path} ${p.rule} ${p.message}`)).toEqual([
      "pools[0].name safe-name the pool name contains whitespace",
      "pools[2].listen unique-sockets binds the same socket as pool app (pools[1].listen)",
      "listeners[1].serverName[0] nginx-server-name-unique is already served on 0.0.0.0:80 by listeners[0]",
    ]);
  });

  it("a pm with a bad field is checked for consistency over its defaults after the cross-field rules, each problem once", () => {
    const cascade = problemsOf(base({ somaxconn: 512, pools: [pool({ pm: { maxRequests: -1, maxChildren: 4, maxSpareServers: 6 } })] }));
    expect(cascade.map((p) => `${p.path} ${p.rule}`)).toEqual([
      "pools[0].pm.maxRequests pm-consistency",
      "backlog backlog-within-somaxconn",
      "pools[0].pm.maxSpareServers pm-consistency",
    ]);
    expect(cascade[2]?.message).toBe("pm.max_spare_servers (6) cannot be greater than pm.max_children (4); php-fpm refuses to start");
    const once = problemsOf(base({ pools: [pool({ pm: { maxChildren: 5, minSpareServers: 10, maxSpareServers: 70000 } })] }));
    expect(once.map((p) => `${p.path} ${p.rule}`)).toEqual(["pools[0].pm.maxSpareServers pm-consistency"]);
  });

  it("the profile module exports what the single file did", () => {
    // Runtime names; the type names are checked by the compiler wherever they are imported.
    expect(Object.keys(profileModule).sort()).toEqual([
      "DEFAULTS",
      "INPUT_RULES",
      "MACHINE_GLOBAL_SYSCTLS",
      "NETDEV_MAX_BACKLOG",
      "ProfileError",
      "SOMAXCONN",
      "TCP_MAX_SYN_BACKLOG",
      "appBacklogs",
      "checkProfile",
      "defineProfile",
      "fastcgiTarget",
      "formatPoolListen",
      "isOwnedPoolKey",
      "kernelTargets",
      "rules",
      "toProfile",
      "validateProfile",
    ]);
  });
});
