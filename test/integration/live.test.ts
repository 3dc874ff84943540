/**
 * Changes on a live fleet (issue #11), real engine, lab hosts under steady load: a backlog-only
 * change and a somaxconn-only change are applied by listening again on the running sockets (no
 * request lost, no restart), a later restart keeps the value, and a host without perl and python3
 * falls back to a restart and says why.
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, type LabHost, requireLabMachine, tearDownAfterAll, testStack } from "./harness";

jest.setTimeout(600_000);

const SOCK = "/run/php/app.sock";
const profile = (backlog: number, extra: Record<string, unknown> = {}) => ({
  name: "it-live",
  backlog,
  pools: [{ name: "app", listen: SOCK, pm: { style: "static", maxChildren: 8 } }],
  listeners: [{ listen: 8080, pool: "app" }],
  ...extra,
});

const lab = new Lab("live");
let stack: Stack;
let remove: () => Promise<void>;

beforeAll(async () => {
  requireLabMachine();
  lab.up(2);
  for (const h of lab.hosts) lab.sh(h.name, "printf '<?php usleep(5000); echo \"ok\";\\n' > /var/www/html/w.php");
  ({ stack, remove } = await testStack("live", { "backlog:inventory": lab.inventory, "backlog:profile": profile(1024, { somaxconn: 4096 }) }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

/** Starts bounded load (wrk, 20 connections, `seconds`) inside each host; returns a function that waits and reads the results. */
function load(hosts: LabHost[], seconds: number): () => { host: string; requests: number; failed: number }[] {
  for (const h of hosts) {
    lab.sh(h.name, `rm -f /tmp/wrk.out; (timeout ${seconds + 20} wrk -t2 -c20 -d${seconds}s http://127.0.0.1:8080/w.php > /tmp/wrk.out 2>&1 &) ; sleep 0.2`);
  }
  return () =>
    hosts.map((h) => {
      const out = lab.sh(
        h.name,
        `for i in $(seq 1 ${(seconds + 25) * 5}); do grep -q 'requests in' /tmp/wrk.out 2>/dev/null && break; sleep 0.2; done; cat /tmp/wrk.out`,
      );
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const failed = non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
      return { host: h.name, requests, failed };
    });
}

function backlogOf(host: string): { php: number; nginx: number; somaxconn: number } {
  const php = Number(lab.sh(host, `ss -H -l -n -x src ${SOCK}`).trim().split(/\s+/)[3]);
  const nginx = Number(lab.sh(host, "ss -H -l -n -t 'sport = :8080'").trim().split(/\s+/)[2]);
  return { php, nginx, somaxconn: Number(lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim()) };
}

function mainPid(host: string, unit: string): string {
  return lab.sh(host, `systemctl show -P MainPID ${unit}`).trim();
}

async function applied(): Promise<Record<string, Record<string, string>>> {
  const state = await stack.exportStack();
  const out: Record<string, Record<string, string>> = {};
  for (const r of (state.deployment.resources ?? []) as { type: string; urn: string; outputs?: Record<string, unknown> }[]) {
    // The host's settings resource (`<host>-settings`) records what its last apply did.
    if (r.type.endsWith("backlog:HostSettings"))
      out[(r.urn.split("::").at(-1) as string).replace(/-settings$/, "")] = (r.outputs?.applied ?? {}) as Record<string, string>;
  }
  return out;
}

test("a backlog-only change under load: every socket listened again in place, 0 failed requests, no restart", async () => {
  const pids = lab.hosts.map((h) => [mainPid(h.name, "php8.2-fpm"), mainPid(h.name, "nginx")]);
  const done = load(lab.hosts, 12);
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile(3000, { somaxconn: 4096 })) });
  await stack.up({ onOutput: () => undefined });
  const results = done();
  for (const r of results) {
    expect(r.requests).toBeGreaterThan(100);
    expect(r).toEqual(expect.objectContaining({ failed: 0 }));
  }
  for (const [i, h] of lab.hosts.entries()) {
    expect(backlogOf(h.name)).toEqual({ php: 3000, nginx: 3000, somaxconn: 4096 });
    // Same processes: nothing was restarted.
    expect([mainPid(h.name, "php8.2-fpm"), mainPid(h.name, "nginx")]).toEqual(pids[i]);
  }
  const a = await applied();
  for (const h of lab.hosts) expect(a[`backlog-${h.name}`]).toEqual({ "php8.2-fpm": "relisten", nginx: "relisten" });
  // The files say the same, so a later restart keeps the value.
  const host = lab.hosts[0].name;
  lab.sh(host, "systemctl restart php8.2-fpm nginx");
  expect(backlogOf(host)).toEqual({ php: 3000, nginx: 3000, somaxconn: 4096 });
});

test("a somaxconn-only change: sockets capped by a lower somaxconn are listened again, 0 failed requests", async () => {
  // The files already say 3000; somaxconn lowered by hand to 1000 and the services restarted on it
  // leave every socket capped at 1000, the state of a host tuned before somaxconn was raised.
  for (const h of lab.hosts) lab.sh(h.name, "sysctl -q -w net.core.somaxconn=1000 && systemctl restart php8.2-fpm nginx");
  for (const h of lab.hosts) expect(backlogOf(h.name)).toEqual({ php: 1000, nginx: 1000, somaxconn: 1000 });
  const done = load(lab.hosts, 10);
  await stack.up({ onOutput: () => undefined });
  for (const r of done()) expect(r).toEqual(expect.objectContaining({ failed: 0 }));
  for (const h of lab.hosts) expect(backlogOf(h.name)).toEqual({ php: 3000, nginx: 3000, somaxconn: 4096 });
  const a = await applied();
  for (const h of lab.hosts) expect(a[`backlog-${h.name}`]).toEqual({ "php8.2-fpm": "relisten", nginx: "relisten" });
});

test("without perl and python3 the host converges by restart, and the output says why", async () => {
  const host = lab.hosts[1].name;
  lab.sh(host, "for f in /usr/bin/perl /usr/bin/python3; do [ -e $f ] && mv $f $f.hidden; done; true");
  try {
    await stack.setConfig("backlog:profile", { value: JSON.stringify(profile(3500, { somaxconn: 4096 })) });
    await stack.up({ onOutput: () => undefined });
    expect(backlogOf(host)).toEqual({ php: 3500, nginx: 3500, somaxconn: 4096 });
    const a = await applied();
    expect(a[`backlog-${host}`]["php8.2-fpm"]).toMatch(/^restart \(fallback: neither perl nor python3/);
    expect(a[`backlog-${lab.hosts[0].name}`]["php8.2-fpm"]).toBe("relisten");
  } finally {
    lab.sh(host, "for f in /usr/bin/perl /usr/bin/python3; do [ -e $f.hidden ] && mv $f.hidden $f; done; true");
  }
});
