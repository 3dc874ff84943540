/**
 * Hosts as they are found (issue #14), real engine: the demo profile deployed to one host of each
 * Debian release (11, 12, 13: php 7.4, 8.2, 8.4) with no service names or paths in the config:
 * each host's php-fpm is found by the probe, verification is green on each, destroy restores each.
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, requireLabMachine, tearDownAfterAll, testStack, type Verification } from "./harness";

jest.setTimeout(1_800_000);

const profile = {
  name: "it-releases",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", pm: { maxChildren: 8 } }],
  listeners: [{ listen: 8080, pool: "www" }],
};
const PHP: Record<string, string> = { bullseye: "7.4", bookworm: "8.2", trixie: "8.4" };

const lab = new Lab("rel");
let stack: Stack;
let remove: () => Promise<void>;
const before: Record<string, string> = {};

beforeAll(async () => {
  requireLabMachine();
  lab.up(3, { suites: ["bullseye", "bookworm", "trixie"] });
  for (const h of lab.hosts) {
    before[h.name] = lab.sh(h.name, `cat /proc/sys/net/core/somaxconn; sha256sum < /etc/php/${PHP[h.suite as string]}/fpm/pool.d/www.conf`);
  }
  ({ stack, remove } = await testStack("releases", { "backlog:inventory": lab.inventory, "backlog:profile": profile }));
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

test("one profile, three releases, no service names: each host's php-fpm is found, verification green on each", async () => {
  await stack.up({ onOutput: () => undefined });
  const v = (await stack.outputs()).verification.value as Verification;
  for (const h of lab.hosts) {
    const ver = PHP[h.suite as string];
    expect(v[h.name]?.every((r) => r.ok)).toBe(true);
    expect(lab.sh(h.name, `grep -c 'listen.backlog = 8192' /etc/php/${ver}/fpm/pool.d/www.conf`).trim()).toBe("1");
    expect(lab.unitStates(h.name, `php${ver}-fpm`)).toEqual(["active"]);
    expect(lab.sh(h.name, "ss -H -l -n -x src /run/php/php8.2-fpm.sock").trim().split(/\s+/)[3]).toBe("8192");
  }
  const actions = (await stack.outputs()).actions.value as Record<string, Record<string, string>>;
  for (const h of lab.hosts) expect(Object.keys(actions[h.name] ?? {})).toContain(`php${PHP[h.suite as string]}-fpm`);
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});

test("a pool added to running hosts is opened by a php-fpm reload (same master), with its backlog, owner and mode, on php 7.4, 8.2 and 8.4", async () => {
  const pid = (unit: string, host: string) => lab.sh(host, `systemctl show -P MainPID ${unit}`).trim();
  const masters = Object.fromEntries(lab.hosts.map((h) => [h.name, pid(`php${PHP[h.suite as string]}-fpm`, h.name)]));
  const api = { name: "api", listen: "/run/php/api.sock", backlog: 2048, listenMode: "0600" };
  await stack.setConfig("backlog:profile", { value: JSON.stringify({ ...profile, pools: [...profile.pools, api] }) });
  await stack.up({ onOutput: () => undefined });
  const outputs = await stack.outputs();
  const applied = outputs.applied.value as Record<string, Record<string, string>>;
  const v = outputs.verification.value as Verification;
  for (const h of lab.hosts) {
    const unit = `php${PHP[h.suite as string]}-fpm`;
    expect(applied[h.name]?.[unit]).toBe("reload");
    expect(pid(unit, h.name)).toBe(masters[h.name]);
    expect(v[h.name]?.every((r) => r.ok)).toBe(true);
    expect(lab.sh(h.name, "ss -H -l -n -x src /run/php/api.sock").trim().split(/\s+/)[3]).toBe("2048");
    expect(lab.sh(h.name, "stat -c '%a %U:%G' /run/php/api.sock").trim()).toBe("600 www-data:www-data");
  }
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});

test("destroy gives each release back what it had", async () => {
  await stack.destroy({ onOutput: () => undefined });
  for (const h of lab.hosts) {
    expect(lab.sh(h.name, `cat /proc/sys/net/core/somaxconn; sha256sum < /etc/php/${PHP[h.suite as string]}/fpm/pool.d/www.conf`)).toBe(before[h.name]);
    expect(lab.unitStates(h.name, `php${PHP[h.suite as string]}-fpm`, "nginx")).toEqual(["active", "active"]);
  }
});
