import fc from "fast-check";
import {
  INI_KEY_PATTERN,
  INI_VALUE_PATTERN,
  LIMITS,
  OWNED_POOL_KEYS,
  ProfileError,
  Problems,
  canonicalIpv6,
  checkExtraDirective,
  checkInt,
  endpointsOverlap,
  formatEndpoint,
  formatProblems,
  isSafeAbsolutePath,
  parseTcpEndpoint,
  showValue,
  unixSocketPathProblem,
  unsafeCharacters,
} from "../../../src/core/validation";

describe("checkInt", () => {
  it.each([
    [1024, undefined],
    ["1024", "must be a number, got string"],
    [1.5, "whole number"],
    [Number.NaN, "whole number"],
    [-1, "between 1 and 65535"],
    [65536, "at most 65535"],
  ])("%p", (value, message) => {
    const problems = new Problems();
    const out = checkInt(problems, "x", value, LIMITS.backlog, "backlog-range", "x");
    if (message === undefined) {
      expect(out).toBe(value);
      expect(problems.count).toBe(0);
    } else {
      expect(out).toBeUndefined();
      expect(`${problems.all[0]?.message} ${problems.all[0]?.fix}`).toContain(message);
    }
  });
});

describe("parseTcpEndpoint", () => {
  it.each([
    [9000, "php-fpm", { family: "any", host: null, port: 9000 }],
    ["9000", "php-fpm", { family: "any", host: null, port: 9000 }],
    [80, "nginx", { family: "ipv4", host: "0.0.0.0", port: 80 }],
    ["*:80", "nginx", { family: "ipv4", host: "0.0.0.0", port: 80 }],
    ["127.0.0.1:9000", "php-fpm", { family: "ipv4", host: "127.0.0.1", port: 9000 }],
    ["[::]:80", "nginx", { family: "ipv6", host: "::", port: 80 }],
    ["[0:0:0:0:0:0:0:1]:80", "nginx", { family: "ipv6", host: "::1", port: 80 }],
    ["[2001:DB8::A]:443", "nginx", { family: "ipv6", host: "2001:db8::a", port: 443 }],
  ] as const)("%p (%s)", (input, flavour, expected) => {
    expect(parseTcpEndpoint(input, flavour)).toEqual(expected);
  });

  it.each([
    ["0", "port"],
    ["65536", "port"],
    ["127.0.0.1:0", "port"],
    ["127.0.0.1:", "port"],
    ["127.000.0.1:80", "IP address"],
    ["256.0.0.1:80", "IP address"],
    ["localhost:80", "IP address"],
    ["[::ffff:1.2.3.4]:80", "not a plain IPv6"],
    ["[fe80::1%eth0]:80", "not a plain IPv6"],
    ["::1:80", "brackets"],
    ["1.2.3.4:80:90", "must be PORT"],
  ])("rejects %p", (input, text) => {
    const r = parseTcpEndpoint(input, "nginx");
    expect("message" in r && r.message).toContain(text);
  });

  it("formats back to the same text", () => {
    for (const s of ["127.0.0.1:9000", "[::1]:9000", "[::]:80", "0.0.0.0:80"]) {
      const e = parseTcpEndpoint(s, "nginx");
      expect("port" in e && formatEndpoint(e)).toBe(s);
    }
    const any = parseTcpEndpoint(9000, "php-fpm");
    expect("port" in any && formatEndpoint(any)).toBe("9000");
  });

  it("canonicalIpv6 compresses like ss and rejects non-literals", () => {
    expect(canonicalIpv6("0:0::0:1")).toBe("::1");
    expect(canonicalIpv6("FE80:0:0:0:0:0:0:1")).toBe("fe80::1");
    expect(canonicalIpv6("example")).toBeUndefined();
    expect(canonicalIpv6("1::2::3")).toBeUndefined();
  });
});

describe("endpointsOverlap", () => {
  const ep = (s: string | number, program: "php-fpm" | "nginx") => {
    const e = parseTcpEndpoint(s, program);
    if (!("port" in e)) throw new Error(e.message);
    return { program, endpoint: e };
  };
  it.each([
    ["127.0.0.1:80", "nginx", "0.0.0.0:80", "nginx", true],
    ["127.0.0.1:80", "nginx", "127.0.0.2:80", "nginx", false],
    ["[::]:80", "nginx", "0.0.0.0:80", "nginx", false],
    ["[::]:80", "nginx", "[::1]:80", "nginx", true],
    [9000, "php-fpm", "127.0.0.1:9000", "nginx", true],
    [9000, "php-fpm", "[::1]:9000", "php-fpm", true],
    ["[::]:9000", "php-fpm", "127.0.0.1:9000", "php-fpm", true],
    ["127.0.0.1:9000", "php-fpm", "127.0.0.1:9001", "php-fpm", false],
  ] as const)("%p/%s vs %p/%s → %p", (a, pa, b, pb, expected) => {
    expect(endpointsOverlap(ep(a, pa), ep(b, pb))).toBe(expected);
    expect(endpointsOverlap(ep(b, pb), ep(a, pa))).toBe(expected);
  });
});

describe("paths", () => {
  it.each(["/run/php/app.sock", "/var/www/html", "/", "/srv/a.b+c-d_e"])("accepts %p", (p) => {
    expect(isSafeAbsolutePath(p)).toBe(true);
  });
  it.each(["run/php", "/run//php", "/run/php/", "/run/../etc", "/run/./x", "/a b", "/a;b", "/a\nb", "/a$b", "/ä"])("rejects %p", (p) => {
    expect(isSafeAbsolutePath(p)).toBe(false);
  });
  it("unix socket paths: prefix, length, /tmp", () => {
    expect(unixSocketPathProblem("unix:/run/php/a.sock")?.fix).toBe("write /run/php/a.sock");
    expect(unixSocketPathProblem(`/run/${"a".repeat(102)}`)).toBeUndefined();
    expect(unixSocketPathProblem(`/run/${"a".repeat(103)}`)?.message).toContain("108 bytes");
    expect(unixSocketPathProblem("/var/tmp/php.sock")?.message).toContain("PrivateTmp");
    expect(unixSocketPathProblem("/run/php/app.sock")).toBeUndefined();
  });
});

describe("extra directives", () => {
  it("accepts php-fpm's directive shapes", () => {
    for (const k of [
      "request_terminate_timeout",
      "pm.status_path",
      "php_admin_value[memory_limit]",
      "env[PATH]",
      "php_flag[display_errors]",
      "slowlog",
      "listen.allowed_clients",
    ]) {
      expect(INI_KEY_PATTERN.test(k)).toBe(true);
    }
    expect(INI_VALUE_PATTERN.test("")).toBe(false);
    for (const v of ["128M", "/var/log/php.log", "30s", "/usr/local/bin:/usr/bin:/bin", "127.0.0.1,::1", "E_ALL", "a b c", "22527"]) {
      expect(INI_VALUE_PATTERN.test(v)).toBe(true);
    }
  });

  it("owns every key that decides the socket or the workers", () => {
    for (const k of ["listen", "listen.backlog", "listen.owner", "listen.group", "listen.mode", "user", "group", "pm", "pm.max_children", "include"]) {
      expect(OWNED_POOL_KEYS).toContain(k);
      const problems = new Problems();
      checkExtraDirective(problems, `extra[${k}]`, k.toUpperCase() === k ? k : k.toUpperCase(), "1");
      expect(problems.all.map((p) => p.rule)).toContain("owned-directive");
    }
  });

  it("no accepted key or value can inject a line, a section or a comment (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary-ascii", maxLength: 30 }), fc.string({ unit: "binary-ascii", maxLength: 30 }), (k, v) => {
        const problems = new Problems();
        const out = checkExtraDirective(problems, "x", k, v);
        if (out === undefined) return;
        expect(`${k} = ${out}`).not.toMatch(/[\n\r;"'$\\{}]|^\[|= .*=/);
        expect(k.startsWith("[")).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("messages", () => {
  it("unsafeCharacters names the dangerous character", () => {
    expect(unsafeCharacters("a\nb")).toContain("line break");
    expect(unsafeCharacters("a;b")).toContain("; { or }");
    expect(unsafeCharacters("a[b")).toContain("[ ] or =");
    expect(unsafeCharacters("a'b")).toContain("quote");
    expect(unsafeCharacters("a b")).toContain("whitespace");
    expect(unsafeCharacters("a\u0007")).toContain("control character");
    expect(unsafeCharacters("abc")).toBeUndefined();
  });

  it("showValue renders every kind of value", () => {
    expect(showValue(undefined)).toBe("undefined");
    expect(showValue(Number.NaN)).toBe("NaN");
    expect(showValue("a\nb")).toBe('"a\\nb"');
    expect(showValue({ a: 1 })).toBe('{"a":1}');
    expect(showValue("x".repeat(200)).length).toBeLessThan(90);
    expect(showValue(() => 1)).toBe("<function>");
  });

  it("ProfileError carries every problem and a numbered message", () => {
    const problems = [
      { path: "backlog", value: 0, rule: "backlog-range", message: "must be between 1 and 65535", fix: "raise it" },
      { path: "pools[1].listen", value: "/tmp/x", rule: "unix-socket-path", message: "is under /tmp", fix: "use /run/php" },
    ];
    const e = new ProfileError(problems);
    expect(e.name).toBe("ProfileError");
    expect(e.problems).toEqual(problems);
    expect(Object.isFrozen(e.problems)).toBe(true);
    expect(e.message).toBe(formatProblems(problems));
    expect(e.message).toBe(
      "Invalid backlog profile: 2 problems\n" +
        "  1. backlog = 0 [backlog-range] must be between 1 and 65535\n" +
        "     fix: raise it\n" +
        '  2. pools[1].listen = "/tmp/x" [unix-socket-path] is under /tmp\n' +
        "     fix: use /run/php",
    );
  });
});

describe("kernel fact behind nginx-address-overlap and unique-sockets", () => {
  it("a specific address cannot bind a port whose wildcard socket listens, nor the reverse", async () => {
    const { createServer } = await import("node:net");
    const listen = (host: string, port: number) =>
      new Promise<{ close: () => void; port: number } | string>((resolve) => {
        const s = createServer();
        s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
        s.listen({ host, port }, () => resolve({ close: () => s.close(), port: (s.address() as { port: number }).port }));
      });
    const wildcard = await listen("0.0.0.0", 0);
    if (typeof wildcard === "string") throw new Error(wildcard);
    expect(await listen("127.0.0.1", wildcard.port)).toBe("EADDRINUSE");
    wildcard.close();
    const specific = await listen("127.0.0.1", 0);
    if (typeof specific === "string") throw new Error(specific);
    expect(await listen("0.0.0.0", specific.port)).toBe("EADDRINUSE");
    specific.close();
  });
});
