/**
 * Fleets change (issue #19), real engine, lab hosts: a host that vanished for good and left the
 * inventory is forgotten with a warning instead of blocking every later `up`; a host that comes
 * back is deployed again from what it has and destroy gives back its true originals; a host
 * replaced under the same name (new host key) converges in one `up`.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, type LabHost, requireLabMachine, tearDownAfterAll, testStack } from "./harness";

jest.setTimeout(600_000);

const profile = { name: "it-gone", backlog: 5000, pools: [{ name: "app", listen: "/run/php/app.sock" }], listeners: [{ listen: 8080, pool: "app" }] };
const lab = new Lab("gone");
let stack: Stack;
let remove: () => Promise<void>;
let all: LabHost[];

function inventory(hosts: LabHost[]): void {
  writeFileSync(lab.inventory, JSON.stringify(hosts));
}

beforeAll(async () => {
  requireLabMachine();
  all = lab.up(2);
  ({ stack, remove } = await testStack("gone", { "backlog:inventory": lab.inventory, "backlog:profile": profile }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

test("a host gone for good and removed from the inventory is forgotten with a warning; the other is untouched; the next up is a no-op", async () => {
  const [stay, gone] = all as [LabHost, LabHost];
  lab.sh(gone.name, "systemctl stop ssh");
  inventory([stay]);
  let out = "";
  const result = await stack.up({
    onOutput: (o) => {
      out += o;
    },
  });
  expect(result.summary.result).toBe("succeeded");
  expect(out).toMatch(new RegExp(`warning: backlog-${gone.name}: forgotten without restoring: the host cannot be reached`));
  expect(result.summary.resourceChanges).toEqual(expect.objectContaining({ delete: 2 }));
  // Only the fleet's own record of its hosts changes; the remaining host's settings are not touched.
  expect(result.summary.resourceChanges?.update ?? 0).toBeLessThanOrEqual(1);
  expect(out).not.toMatch(new RegExp(`backlog-${stay.name}-settings\\s+updat`));
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});

test("the forgotten host comes back: deployed from what it has; destroy gives back its true originals", async () => {
  const gone = all[1] as LabHost;
  lab.sh(gone.name, "systemctl start ssh");
  // What the deployment changed is still there, with the originals kept on the host.
  expect(lab.sh(gone.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("5000");
  inventory(all);
  await stack.up({ onOutput: () => undefined });
  expect(lab.sh(gone.name, "ls /var/lib/pulumi-backlog/owners | wc -l").trim()).toBe("1");
  await stack.destroy({ onOutput: () => undefined });
  expect(lab.sh(gone.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("4096");
  expect(lab.sh(gone.name, "[ -e /etc/php/8.2/fpm/pool.d/app.conf ] && echo present || echo absent").trim()).toBe("absent");
  expect(lab.sh(gone.name, "[ -e /var/lib/pulumi-backlog ] && echo present || echo absent").trim()).toBe("absent");
});

test("a host replaced under the same name (new host key) converges in one up", async () => {
  await stack.up({ onOutput: () => undefined });
  const host = all[0] as LabHost;
  lab.sh(host.name, "rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh");
  const key = lab.sh(host.name, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").trim();
  const entries = JSON.parse(readFileSync(lab.inventory, "utf8")) as LabHost[];
  inventory(entries.map((e) => (e.name === host.name ? { ...e, hostKey: key } : e)));
  const result = await stack.up({ onOutput: () => undefined });
  expect(result.summary.result).toBe("succeeded");
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});
