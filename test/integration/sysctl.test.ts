/**
 * Sysctl conflicts (issue #14), real engine on lab hosts: a host whose /etc/sysctl.conf says
 * `net.core.somaxconn = 128` (the classic advice). Mode report: the first deploy warns and lists it
 * (stack output), verification shows what `sysctl --system` would leave (advisory), the file is not
 * touched and a second `up` changes nothing. Mode neutralize: the line is commented out, so
 * `sysctl --system` and `sysctl -p` keep the profile's values; destroy puts the file back byte for
 * byte. Hosts: Debian 11 (the 99-sysctl.conf link; php 7.4, whose ondemand pools get at least 511),
 * Debian 12 (the link; php 8.2: the pool's own backlog) and Debian 13 (no /etc/sysctl.conf shipped:
 * the test creates it, as the classic advice does; php 8.4).
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, requireLabMachine, tearDownAfterAll, testStack, type Verification } from "./harness";

jest.setTimeout(1_800_000);

const profile = {
  name: "it-sysctl",
  backlog: 8192,
  // An ondemand pool below php-fpm's old floor: 7.4 listens with 511, 8.2 with 256.
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", backlog: 256, pm: { style: "ondemand", maxChildren: 4 } }],
  listeners: [{ listen: 8080, pool: "www" }],
};
const PHP: Record<string, string> = { bullseye: "7.4", bookworm: "8.2", trixie: "8.4" };
const POOL_BACKLOG: Record<string, string> = { bullseye: "511", bookworm: "256", trixie: "256" };

const lab = new Lab("sysc");
let stack: Stack;
let remove: () => Promise<void>;
const confSha: Record<string, string> = {};
const confLine: Record<string, number> = {};
const times: Record<string, number> = {};

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    times[what] = (Date.now() - t0) / 1000;
  }
}

const somaxconn = (host: string) => lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim();

beforeAll(async () => {
  requireLabMachine();
  lab.up(3, { suites: ["bullseye", "bookworm", "trixie"] });
  for (const h of lab.hosts) {
    lab.sh(h.name, "printf 'net.core.somaxconn = 128\\n' >> /etc/sysctl.conf; sysctl -q -p");
    confSha[h.name] = lab.sh(h.name, "sha256sum < /etc/sysctl.conf").trim();
    confLine[h.name] = Number(lab.sh(h.name, "grep -n '^net.core.somaxconn = 128$' /etc/sysctl.conf | cut -d: -f1").trim());
    expect(somaxconn(h.name)).toBe("128");
  }
  ({ stack, remove } = await testStack("sysctl", { "backlog:inventory": lab.inventory, "backlog:profile": profile }));
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

afterAll(() => {
  // eslint-disable-next-line no-console
  console.log(`sysctl.test.ts timings (s): ${JSON.stringify(times)}`);
});

interface ConflictOut {
  key: string;
  file: string;
  line: number;
  value: number;
  wanted: number;
  tools: string[];
  via: string[];
  action: string;
}

test("mode report: the first deploy warns and lists the /etc/sysctl.conf line, verification shows what sysctl --system would leave, the file stays", async () => {
  let out = "";
  await timed("up report", () =>
    stack.up({
      onOutput: (s) => {
        out += s;
      },
    }),
  );
  const outputs = await stack.outputs();
  const conflicts = outputs.sysctlConflicts!.value as Record<string, ConflictOut[]>;
  const v = outputs.verification!.value as Verification & Record<string, { advisory?: boolean }[]>;
  for (const h of lab.hosts) {
    const line = confLine[h.name]!;
    expect(conflicts[h.name]).toEqual([
      {
        key: "net.core.somaxconn",
        file: "/etc/sysctl.conf",
        line,
        value: 128,
        text: "net.core.somaxconn = 128",
        wanted: 8192,
        tools: ["sysctl --system", "sysctl -p"],
        via: [],
        action: "reported",
      },
    ]);
    expect(out).toContain(
      `sysctl conflict: /etc/sysctl.conf:${line} sets net.core.somaxconn = 128 (the profile wants 8192); it wins over the drop-in under sysctl --system, sysctl -p`,
    );
    const rows = v[h.name]!;
    expect(rows.find((r) => r.setting === "net.core.somaxconn")).toMatchObject({ expected: 8192, effective: 8192, ok: true });
    expect(rows.find((r) => r.setting === "net.core.somaxconn after sysctl --system")).toMatchObject({
      expected: 8192,
      effective: 128,
      ok: false,
      advisory: true,
    });
    // Debian 11 and 12 read /etc/sysctl.conf at boot through 99-sysctl.conf, before the drop-in; 13 not at all: boot keeps the profile.
    expect(rows.find((r) => r.setting === "net.core.somaxconn after boot (systemd-sysctl)")).toMatchObject({ effective: 8192, ok: true });
    expect(lab.sh(h.name, "sha256sum < /etc/sysctl.conf").trim()).toBe(confSha[h.name]);
    // php-fpm's own rule by version: an ondemand pool below 511 gets 511 before PHP 8.2.
    expect(lab.sh(h.name, "ss -H -l -n -x src /run/php/php8.2-fpm.sock").trim().split(/\s+/)[3]).toBe(POOL_BACKLOG[h.suite as string]);
    expect(rows.find((r) => r.setting.startsWith("php-fpm pool www"))).toMatchObject({ expected: Number(POOL_BACKLOG[h.suite as string]), ok: true });
  }
  // The conflict is real: sysctl --system undoes the profile on the running kernel.
  const h0 = lab.hosts[0]!.name;
  lab.sh(h0, "sysctl -q --system >/dev/null 2>&1 || true");
  expect(somaxconn(h0)).toBe("128");
  // A conflict left in mode report is no drift this library can fix: the next up changes nothing
  // (the kernel value the --system run lowered is drift, though: put it back first).
  lab.sh(h0, "sysctl -q -p /etc/sysctl.d/zz-pulumi-backlog.conf");
  await timed("up report again", () => stack.up({ onOutput: () => undefined, expectNoChanges: true }));
});

test("mode neutralize: the line is commented out; sysctl --system and sysctl -p keep the profile's values", async () => {
  await stack.setConfig("backlog:conflicts", { value: "neutralize" });
  let out = "";
  await timed("up neutralize", () =>
    stack.up({
      onOutput: (s) => {
        out += s;
      },
    }),
  );
  const outputs = await stack.outputs();
  const conflicts = outputs.sysctlConflicts!.value as Record<string, ConflictOut[]>;
  const v = outputs.verification!.value as Verification;
  for (const h of lab.hosts) {
    const line = confLine[h.name]!;
    expect(conflicts[h.name]).toEqual([expect.objectContaining({ file: "/etc/sysctl.conf", line, value: 128, action: "neutralized" })]);
    expect(out).toContain(`sysctl conflict: /etc/sysctl.conf:${line} sets net.core.somaxconn = 128`);
    expect(lab.sh(h.name, `sed -n ${line}p /etc/sysctl.conf`).trim()).toBe(
      "# pulumi-backlog neutralized (conflicts with the drop-in; destroy puts it back): net.core.somaxconn = 128",
    );
    expect(v[h.name]!.every((r) => r.ok)).toBe(true);
    lab.sh(h.name, "echo 77 > /proc/sys/net/core/somaxconn; sysctl -q --system >/dev/null 2>&1 || true");
    expect(somaxconn(h.name)).toBe("8192");
    lab.sh(h.name, "echo 77 > /proc/sys/net/core/somaxconn; sysctl -q -p /etc/sysctl.d/zz-pulumi-backlog.conf; sysctl -q -p");
    expect(somaxconn(h.name)).toBe("8192");
    expect(lab.sh(h.name, "ls /var/lib/pulumi-backlog/owners/ && cat /var/lib/pulumi-backlog/owners/*")).toContain("/etc/sysctl.conf");
  }
  // The file stays neutralized and this owner's: the next up changes nothing.
  await timed("up neutralize again", () => stack.up({ onOutput: () => undefined, expectNoChanges: true }));
  const again = (await stack.outputs()).sysctlConflicts!.value as Record<string, ConflictOut[]>;
  for (const h of lab.hosts) expect(again[h.name]).toEqual([]);
});

test("destroy puts /etc/sysctl.conf back byte for byte", async () => {
  await timed("destroy", () => stack.destroy({ onOutput: () => undefined }));
  for (const h of lab.hosts) {
    expect(lab.sh(h.name, "sha256sum < /etc/sysctl.conf").trim()).toBe(confSha[h.name]);
    expect(lab.sh(h.name, `sed -n ${confLine[h.name]}p /etc/sysctl.conf`).trim()).toBe("net.core.somaxconn = 128");
    expect(lab.unitStates(h.name, `php${PHP[h.suite as string]}-fpm`, "nginx")).toEqual(["active", "active"]);
  }
});
