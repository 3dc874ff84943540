/**
 * Failures leave hosts working and known: a configuration that fails php-fpm's own test, a host
 * that cannot be reached, a pool removed from the profile; and a reboot keeps the values.
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, tearDownAfterAll, type LabHost, requireLabMachine, testStack } from "./harness";

jest.setTimeout(600_000);

const pool = (name: string, extra?: Record<string, string>) => ({ name, listen: `/run/php/${name}.sock`, ...(extra ? { extra } : {}) });
const profile = (pools: object[]) => ({ name: "it-fail", backlog: 5000, pools, listeners: [{ listen: 8080, pool: "app" }] });

const lab = new Lab("fail");
let stack: Stack;
let remove: () => Promise<void>;

function httpStatus(host: string, path: string): string {
  return lab.sh(host, `curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080${path}`).trim();
}

beforeAll(async () => {
  requireLabMachine();
  lab.up(2);
  for (const h of lab.hosts) {
    lab.sh(h.name, "printf '<?php echo \"ok\";\\n' > /var/www/html/ok.php");
  }
  ({ stack, remove } = await testStack("fail", { "backlog:inventory": lab.inventory, "backlog:profile": profile([pool("app"), pool("extra")]) }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

test("a pool that fails php-fpm -t fails the deployment with the test's output; the old pool stays and serves", async () => {
  const host = lab.hosts[0].name;
  const before = lab.sh(host, "cat /etc/php/8.2/fpm/pool.d/app.conf");
  expect(httpStatus(host, "/ok.php")).toBe("200");
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile([pool("app", { chdir: "/nonexistent/dir" }), pool("extra")])) });
  const error = await stack.up({ onOutput: () => undefined }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(error).toBeDefined();
  const message = String(error);
  expect(message).toMatch(/test php8\.2-fpm/);
  expect(message).toMatch(/chdir|FPM initialization failed/);
  expect(lab.sh(host, "cat /etc/php/8.2/fpm/pool.d/app.conf")).toBe(before);
  expect(lab.unitStates(host, "php8.2-fpm", "nginx")).toEqual(["active", "active"]);
  expect(httpStatus(host, "/ok.php")).toBe("200");
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile([pool("app"), pool("extra")])) });
  await stack.up({ onOutput: () => undefined });
});

test("one host unreachable: the others converge and the failure names the host", async () => {
  const [reachable, unreachable] = lab.hosts as [LabHost, LabHost];
  // The host is down for SSH (same address, nothing answers behind it); its other services keep running.
  lab.sh(unreachable.name, "systemctl stop ssh");
  try {
    await stack.setConfig("backlog:profile", { value: JSON.stringify({ ...profile([pool("app"), pool("extra")]), backlog: 6000 }) });
    const error = await stack.up({ onOutput: () => undefined }).then(
      () => undefined,
      (e: Error) => e,
    );
    // The kernel's default somaxconn is 4096: the profile's values are above it, so they show.
    expect(String(error)).toMatch(new RegExp(`backlog-${unreachable.name}: cannot connect to root@127\\.0\\.0\\.1:${unreachable.port}`));
    expect(lab.sh(reachable.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("6000");
    expect(lab.sh(unreachable.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("5000");
  } finally {
    lab.sh(unreachable.name, "systemctl start ssh");
  }
  await stack.up({ onOutput: () => undefined });
  expect(lab.sh(unreachable.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("6000");
});

test("a host down at probe time and back before its batch starts is deployed in the same run, after the other", async () => {
  const [reachable, flaky] = lab.hosts as [LabHost, LabHost];
  lab.sh(flaky.name, "systemctl stop ssh");
  let restarted = false;
  const order: string[] = [];
  try {
    await stack.setConfig("backlog:profile", { value: JSON.stringify({ ...profile([pool("app"), pool("extra")]), backlog: 6500 }) });
    const t0 = Date.now();
    const result = await stack.up({
      onOutput: () => undefined,
      onEvent: (e) => {
        // Its first probe failed: the host comes back while the other host is being deployed.
        if (!restarted && e.diagnosticEvent?.message.includes(`backlog-${flaky.name}: cannot connect to`)) {
          restarted = true;
          lab.sh(flaky.name, "systemctl start ssh");
        }
        const urn = e.resOutputsEvent?.metadata.urn ?? "";
        if (urn.endsWith("-settings")) order.push(urn.replace(/^.*::backlog-(.*)-settings$/, "$1"));
      },
    });
    console.log(
      `host ${flaky.name} down at probe time, back at once: up ${((Date.now() - t0) / 1000).toFixed(1)} s, settings done in order ${order.join(", ")}`,
    );
    expect(restarted).toBe(true);
    expect(result.summary.result).toBe("succeeded");
    expect(result.stdout).toContain(`backlog-${flaky.name}: probing again now that its batch 2 of 2 starts`);
    expect(order).toEqual([reachable.name, flaky.name]);
    for (const h of lab.hosts) expect(lab.sh(h.name, "cat /proc/sys/net/core/somaxconn").trim()).toBe("6500");
  } finally {
    if (!restarted) lab.sh(flaky.name, "systemctl start ssh");
  }
});

test("a pool removed from the profile is given back as it was; the others stay", async () => {
  const host = lab.hosts[1].name;
  expect(lab.sh(host, "ls /etc/php/8.2/fpm/pool.d").split("\n")).toContain("extra.conf");
  await stack.setConfig("backlog:profile", { value: JSON.stringify({ ...profile([pool("app")]), backlog: 6000 }) });
  await stack.up({ onOutput: () => undefined });
  expect(lab.sh(host, "ls /etc/php/8.2/fpm/pool.d").trim().split("\n").sort()).toEqual(["app.conf", "www.conf"]);
  expect(lab.sh(host, "ss -H -l -n -x").includes("/run/php/extra.sock")).toBe(false);
  await stack.up({ expectNoChanges: true, onOutput: () => undefined });
});

test("after a reboot the host still has the profile's values (the drop-in wins at boot)", async () => {
  const host = lab.hosts[0].name;
  lab.cli(["restart", host]);
  expect(lab.sh(host, "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog").trim().split("\n")).toEqual(["6000", "6000"]);
  expect(lab.sh(host, "ss -H -l -n -x src /run/php/app.sock").trim().split(/\s+/)[3]).toBe("6000");
  await stack.up({ expectNoChanges: true, onOutput: () => undefined });
});
