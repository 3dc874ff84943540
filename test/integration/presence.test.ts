/**
 * Hosts whose machine is stopped or gone (issue #19), real engine, lab hosts: the `presence` of a
 * host, the input `ec2Hosts` sets from an instance's EC2 state, here set in the inventory of this
 * project's program. A "stopped" host is kept as last deployed and not touched (only its presence
 * is recorded, so that a refresh does not try it); a "gone" one is
 * registered with retainOnDelete, so that when it leaves the inventory the engine drops it without
 * calling delete: no SSH connection, nothing given back, even though the host could be reached.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, type LabHost, requireLabMachine, tearDownAfterAll, testStack } from "./harness";

jest.setTimeout(600_000);

const profile = { name: "it-presence", backlog: 5000, pools: [{ name: "app", listen: "/run/php/app.sock" }], listeners: [{ listen: 8080, pool: "app" }] };
const lab = new Lab("pres");
let stack: Stack;
let remove: () => Promise<void>;
let stay: LabHost;
let away: LabHost;

function inventory(hosts: (LabHost & { presence?: string })[]): void {
  writeFileSync(lab.inventory, JSON.stringify(hosts));
}

/** sshd's successful logins on a host (its journal), as counted by `npm run bench:fleet`. */
const logins = (host: string) => Number(lab.sh(host, "journalctl -q -u ssh --no-pager | grep -c 'Accepted publickey' || true").trim());

/** The state of one resource of the stack (`pulumi stack export`), by the end of its URN. */
async function resource(urnEnd: string): Promise<Record<string, any> | undefined> {
  const state = await stack.exportStack();
  return (state.deployment.resources as Record<string, any>[]).find((r) => String(r.urn).endsWith(urnEnd));
}

async function up(): Promise<{ out: string; seconds: number; changes: Record<string, number> }> {
  let out = "";
  const t0 = Date.now();
  const result = await stack.up({
    onOutput: (o) => {
      out += o;
    },
  });
  expect(result.summary.result).toBe("succeeded");
  return { out, seconds: (Date.now() - t0) / 1000, changes: result.summary.resourceChanges ?? {} };
}

beforeAll(async () => {
  requireLabMachine();
  [stay, away] = lab.up(2) as [LabHost, LabHost];
  ({ stack, remove } = await testStack("presence", { "backlog:inventory": lab.inventory, "backlog:profile": profile }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

test("stopped: sshd down, up succeeds with a warning and records only the presence; preview --diff shows presence alone; refresh makes no SSH attempt", async () => {
  const before = await resource(`backlog-${away.name}-settings`);
  lab.sh(away.name, "systemctl stop ssh");
  inventory([stay, { ...away, presence: "stopped" }]);
  // What an operator approves: one update of the stopped host, whose diff is its presence alone.
  const preview = await stack.preview({ diff: true, onOutput: () => undefined });
  console.log(`presence stopped: preview changes ${JSON.stringify(preview.changeSummary)}`);
  expect(preview.changeSummary.update).toBe(1);
  expect(preview.stdout).toMatch(/~ presence\s*:\s*"present" => "stopped"/);
  // None of the last deploy's decision is shown as removed (the program made none for this host).
  expect(preview.stdout).not.toMatch(/^\s+- (plan|expected|before|desiredHash|run|settings|files|services|retired)\b/m);
  const { out, seconds, changes } = await up();
  console.log(`presence stopped: up took ${seconds.toFixed(1)} s, changes ${JSON.stringify(changes)}`);
  expect(out).toMatch(new RegExp(`warning: backlog-${away.name}: the machine is stopped: not probed and not changed \\(no SSH\\)`));
  expect(out).not.toMatch(/cannot connect|Connection refused/);
  expect(changes.update).toBe(1);
  expect(changes).not.toHaveProperty("delete");
  expect(changes).not.toHaveProperty("create");
  const after = await resource(`backlog-${away.name}-settings`);
  // The last deploy's record (plan, verification, connection) stays; only the presence is new.
  // (The connection stays a secret, marked as such in the state; its value is not compared here.)
  const open = (r: Record<string, any> | undefined) => ({ ...r, connection: typeof r?.connection });
  expect(open(after?.outputs)).toEqual(open({ ...before?.outputs, presence: "stopped" }));
  expect(open(after?.inputs)).toEqual(open({ ...before?.inputs, presence: "stopped" }));
  expect(after?.outputs?.connection).toHaveProperty(["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270");
  expect(after?.retainOnDelete ?? false).toBe(false);
  expect((await stack.outputs()).absent?.value).toEqual({ [away.name]: "stopped" });
  // sshd is down: a refresh that tried to reach the host would fail. It reads the reachable host only.
  const t0 = Date.now();
  const refreshed = await stack.refresh({ onOutput: () => undefined });
  console.log(`presence stopped: refresh took ${((Date.now() - t0) / 1000).toFixed(1)} s, ${JSON.stringify(refreshed.summary.resourceChanges)}`);
  expect(refreshed.summary.result).toBe("succeeded");
  expect(open((await resource(`backlog-${away.name}-settings`))?.outputs)).toEqual(open(after?.outputs));
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});

test("gone: up succeeds without SSH; the resource is marked retainOnDelete in the state", async () => {
  inventory([stay, { ...away, presence: "gone" }]);
  const { out, seconds, changes } = await up();
  console.log(`presence gone: up took ${seconds.toFixed(1)} s, changes ${JSON.stringify(changes)}`);
  expect(out).toMatch(new RegExp(`warning: backlog-${away.name}: the machine is gone for good`));
  expect(out).not.toMatch(/cannot connect|Connection refused/);
  expect(changes.update).toBe(1); // stopped → gone, recorded without SSH
  expect(changes).not.toHaveProperty("delete");
  const after = await resource(`backlog-${away.name}-settings`);
  expect(after?.retainOnDelete).toBe(true);
  expect(after?.outputs?.plan).toBeDefined();
  expect(after?.outputs?.presence).toBe("gone");
  expect((await stack.outputs()).absent?.value).toEqual({ [away.name]: "gone" });
});

test("gone, then out of the inventory: dropped without any SSH connection, nothing given back although the host answers", async () => {
  // sshd answers again: a delete would connect, log in and give the host back.
  lab.sh(away.name, "systemctl start ssh");
  const loginsBefore = logins(away.name);
  inventory([stay]);
  const { out, seconds, changes } = await up();
  console.log(`gone host removed: up took ${seconds.toFixed(1)} s, changes ${JSON.stringify(changes)}, logins on it ${loginsBefore} -> ${logins(away.name)}`);
  expect(changes).toEqual(expect.objectContaining({ delete: 2 })); // its component and its settings
  expect(out).not.toMatch(/forgotten without restoring/); // not the onGone path: no connection was tried
  expect(logins(away.name)).toBe(loginsBefore);
  expect(lab.sh(away.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("5000");
  expect(lab.sh(away.name, "ls /var/lib/pulumi-backlog/owners | wc -l").trim()).toBe("1");
  expect(await resource(`backlog-${away.name}-settings`)).toBeUndefined();
  expect(seconds).toBeLessThan(60);
  await stack.up({ onOutput: () => undefined, expectNoChanges: true });
});

test("restoring the dropped host later: back into the inventory, up converges, destroy gives back its true originals", async () => {
  inventory(JSON.parse(readFileSync(lab.inventory, "utf8")).concat([away]));
  await up();
  expect(lab.sh(away.name, "ls /var/lib/pulumi-backlog/owners | wc -l").trim()).toBe("1");
  await stack.destroy({ onOutput: () => undefined });
  for (const h of [stay, away]) {
    expect(lab.sh(h.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("4096");
    expect(lab.sh(h.name, "[ -e /var/lib/pulumi-backlog ] && echo present || echo absent").trim()).toBe("absent");
  }
});
