/**
 * How the library reaches hosts: a non-root user through sudo, a bastion hop, a pinned host key
 * that does not match (refused before anything runs on the host), and a fleet behind a bastion
 * that drops connections beyond its MaxStartups.
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { readFileSync } from "node:fs";
import { runScript, type SshConnection } from "../../src/transport/ssh";
import { Lab, tearDownAfterAll, type LabHost, requireLabMachine, testStack } from "./harness";

jest.setTimeout(600_000);

const profile = { name: "it-conn", backlog: 5000, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }] };
const lab = new Lab("conn");
let a: LabHost;
let b: LabHost;
let stack: Stack;
let remove: () => Promise<void>;

beforeAll(async () => {
  requireLabMachine();
  [a, b] = lab.up(2);
  // A cloud-image style login: user deploy with the lab key and password-less sudo.
  lab.sh(
    a.name,
    [
      "useradd -m -s /bin/sh deploy",
      "install -d -m 700 -o deploy -g deploy /home/deploy/.ssh",
      "install -m 600 -o deploy -g deploy /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys",
      "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy",
    ].join(" && "),
  );
  ({ stack, remove } = await testStack("conn", { "backlog:profile": profile }));
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

const somaxconn = (h: LabHost) => lab.sh(h.name, "cat /proc/sys/net/core/somaxconn").trim();

test("a non-root user through sudo, and a host behind a bastion, are deployed and verified", async () => {
  await stack.setConfig("backlog:hosts", {
    value: JSON.stringify([
      { name: "viasudo", host: a.host, port: a.port, user: "deploy", hostKey: a.hostKey, privateKeyPath: a.privateKeyPath },
      // The bastion is host b itself: from inside b, 127.0.0.1:22 is b's own sshd, reached in a second, nested session.
      {
        name: "viabastion",
        host: "127.0.0.1",
        port: 22,
        hostKey: b.hostKey,
        privateKeyPath: b.privateKeyPath,
        proxy: { host: b.host, port: b.port, hostKey: b.hostKey, privateKeyPath: b.privateKeyPath },
      },
    ]),
  });
  await stack.up({ onOutput: () => undefined });
  const v = (await stack.outputs()).verification.value as Record<string, { ok: boolean }[]>;
  expect(Object.keys(v).sort()).toEqual(["viabastion", "viasudo"]);
  expect(
    Object.values(v)
      .flat()
      .every((r) => r.ok),
  ).toBe(true);
  expect(somaxconn(a)).toBe("5000");
  expect(somaxconn(b)).toBe("5000");
  expect(lab.sh(a.name, "journalctl -q -u ssh --no-pager | grep -c 'Accepted publickey for deploy'").trim()).not.toBe("0");
  await stack.destroy({ onOutput: () => undefined });
  expect(somaxconn(a)).toBe("4096");
  expect(somaxconn(b)).toBe("4096");
});

test("a host key that does not match the pinned one is refused and the host is not touched", async () => {
  await stack.setConfig("backlog:hosts", {
    value: JSON.stringify([{ name: "impostor", host: a.host, port: a.port, hostKey: b.hostKey, privateKeyPath: a.privateKeyPath }]),
  });
  const before = lab.sh(a.name, "journalctl -q -u ssh --no-pager | grep -c 'Accepted publickey' || true").trim();
  const error = await stack.up({ onOutput: () => undefined }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(String(error)).toMatch(/backlog-impostor: host key mismatch for root@127\.0\.0\.1:\d+/);
  // Refused during the handshake, before authentication: no login, no change.
  expect(lab.sh(a.name, "journalctl -q -u ssh --no-pager | grep -c 'Accepted publickey' || true").trim()).toBe(before);
  expect(somaxconn(a)).toBe("4096");
});

test("a fleet behind one bastion whose sshd drops a third unauthenticated connection: handshakes wait their turn (proxy.maxStartups) instead of failing", async () => {
  // The bastion (host b) drops every new connection while 2 are unauthenticated (MaxStartups 2:100:2).
  // The hosts behind it: a second sshd of b on port 2222 (same host keys), which drops nothing.
  lab.sh(b.name, "echo 'MaxStartups 2:100:2' >> /etc/ssh/sshd_config && systemctl reload ssh");
  lab.sh(b.name, "/usr/sbin/sshd -p 2222 -o PidFile=/run/sshd-2222.pid -o MaxStartups=200:30:300");
  const key = readFileSync(b.privateKeyPath, "utf8");
  const hop = (maxStartups: number): SshConnection => ({
    host: "127.0.0.1",
    port: 2222,
    hostKey: b.hostKey,
    privateKey: key,
    dialAttempts: 1,
    proxy: { host: b.host, port: b.port, hostKey: b.hostKey, privateKey: key, dialAttempts: 1, maxStartups },
  });
  const fleet = async (maxStartups: number) => {
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => runScript(hop(maxStartups), "echo ok")));
    return results.map((r) => (r.status === "fulfilled" ? `exit ${r.value.code} ${r.value.stdout.trim()}` : (r.reason as Error).message));
  };
  try {
    // The fault is real: 12 handshakes at once, with no more than one attempt each, are dropped in part.
    const unlimited = await fleet(12);
    const dropped = unlimited.filter((r) => /cannot connect to root@127\.0\.0\.1:\d+/.test(r)).length;
    console.log(`bastion with MaxStartups 2:100:2, 12 calls at once: limit 12: ${dropped} of 12 could not connect`);
    expect(dropped).toBeGreaterThan(0);
    // One handshake at a time (under the bastion's 2): all 12 get through on their first attempt.
    expect(await fleet(1)).toEqual(Array(12).fill("exit 0 ok"));
  } finally {
    lab.sh(b.name, "kill $(cat /run/sshd-2222.pid); sed -i '/^MaxStartups 2:100:2$/d' /etc/ssh/sshd_config && systemctl reload ssh");
  }
});
