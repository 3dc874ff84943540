/**
 * The deployment program (index.ts) with the real Pulumi engine against three lab hosts:
 * apply and verify, no-change run, drift, a changed profile, a host raised above the profile, destroy.
 */
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, tearDownAfterAll, type Verification, requireLabMachine, testStack } from "./harness";

jest.setTimeout(600_000);

const profile = (backlog: number, extra: Record<string, unknown> = {}) => ({
  name: "it-web",
  backlog,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
  ...extra,
});

const lab = new Lab("dep");
let stack: Stack;
let remove: () => Promise<void>;
const original: Record<string, string> = {};

beforeAll(async () => {
  requireLabMachine();
  lab.up(3);
  for (const h of lab.hosts) {
    original[h.name] = lab.sh(
      h.name,
      "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog; sha256sum /etc/php/8.2/fpm/pool.d/www.conf; ls /etc/sysctl.d /etc/nginx/conf.d",
    );
  }
  ({ stack, remove } = await testStack("deploy", { "backlog:inventory": lab.inventory, "backlog:profile": profile(8192) }));
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

async function verification(): Promise<Verification> {
  return (await stack.outputs()).verification.value as Verification;
}

function somaxconn(host: string): number {
  return Number(lab.sh(host, "cat /proc/sys/net/core/somaxconn").trim());
}

function socketBacklog(host: string, path: string): number {
  // ss -l: for a listening socket Send-Q is the effective backlog.
  const line = lab.sh(host, `ss -H -l -n -x src ${path}`).trim().split("\n")[0] ?? "";
  return Number(line.split(/\s+/)[3]);
}

const mainPids = (host: string) => lab.sh(host, "systemctl show -p MainPID --value php8.2-fpm nginx").trim();

test("up applies the profile on 3 hosts without a restart, and every effective value equals the expected one", async () => {
  const pids = Object.fromEntries(lab.hosts.map((h) => [h.name, mainPids(h.name)]));
  const result = await stack.up({ onOutput: () => undefined });
  expect(result.summary.result).toBe("succeeded");
  // Debian's www.conf and the profile's pool make the same socket (listen.mode 0660 is php-fpm's
  // default, commented out in Debian's file): php-fpm reloads and its socket is listened again;
  // nginx binds its new listener on reload. The same processes go on serving.
  const applied = (await stack.outputs()).applied.value as Record<string, Record<string, string>>;
  for (const h of lab.hosts) {
    expect(applied[h.name]).toEqual({ "php8.2-fpm": "reload+relisten", nginx: "reload" });
    expect(mainPids(h.name)).toBe(pids[h.name]);
  }
  const v = await verification();
  expect(Object.keys(v).sort()).toEqual(lab.hosts.map((h) => h.name).sort());
  for (const h of lab.hosts) {
    // 4 running values, and each kernel key again as boot (systemd-sysctl) and `sysctl --system` would set it.
    expect(v[h.name]).toHaveLength(8);
    expect(v[h.name].filter((r) => /after boot|after sysctl --system/.test(r.setting))).toHaveLength(4);
    for (const row of v[h.name]) {
      expect(row).toEqual(expect.objectContaining({ expected: 8192, effective: 8192, ok: true }));
    }
    // And independently of the library's own reading:
    expect(somaxconn(h.name)).toBe(8192);
    expect(socketBacklog(h.name, "/run/php/php8.2-fpm.sock")).toBe(8192);
    // Without a Netid column (tcp only), Send-Q is the third field.
    expect(lab.sh(h.name, "ss -H -l -n -t sport = :8080").trim().split(/\s+/)[2]).toBe("8192");
  }
});

test("a second up without changes reports no changes", async () => {
  const result = await stack.up({ expectNoChanges: true, onOutput: () => undefined });
  expect(result.summary.resourceChanges).toEqual({ same: 1 + 1 + 3 * 2 });
});

test("a drifted host: preview says what changes on which host and how; a no-op preview says nothing; up repairs it", async () => {
  const host = lab.hosts[1].name;
  const quiet = await stack.preview();
  expect(quiet.stdout).not.toMatch(/will change:/);
  lab.sh(host, "sysctl -w net.core.somaxconn=1000 >/dev/null && sed -i 's/^pm.max_children = .*/pm.max_children = 3/' /etc/php/8.2/fpm/pool.d/www.conf");
  const preview = await stack.preview();
  expect(preview.changeSummary.update).toBe(1);
  expect(preview.stdout).toContain(`backlog-${host}-settings`);
  // What changes, attached to the host in the preview's diagnostics (pulumi hides them with --diff).
  const text = preview.stdout;
  expect(text).toContain(`backlog-${host} will change:`);
  expect(text).toContain("net.core.somaxconn: 1000 → 8192");
  expect(text).toMatch(/-pm\.max_children = 3/);
  expect(text).toMatch(/\+pm\.max_children = \d+/);
  expect(text).toMatch(/php8\.2-fpm: reload \(/);
  // Only the drifted host says anything.
  for (const h of lab.hosts.filter((x) => x.name !== host)) expect(text).not.toContain(`backlog-${h.name} will change:`);
  // The same as structured data, for CI gates: the settings resource's inputs in preview --json
  // (numbers in run.changes; see test/integration/preview.test.ts and docs/preview.md).
  const { execFileSync } = await import("node:child_process");
  const env = { ...process.env, ...(stack.workspace.envVars ?? {}) };
  const out = JSON.parse(
    execFileSync("pulumi", ["preview", "--json", "--stack", stack.name, "--non-interactive"], {
      cwd: stack.workspace.workDir,
      env,
      encoding: "utf8",
      maxBuffer: 64 << 20,
    }),
  );
  const step = (
    out.steps as {
      urn: string;
      newState?: {
        inputs?: { run?: { changes?: { settings: { setting: string; current: number; wanted: number }[]; services: { unit: string; action: string }[] } } };
      };
    }[]
  ).find((st) => st.urn.endsWith(`::backlog-${host}-settings`));
  const changes = step?.newState?.inputs?.run?.changes;
  expect(changes?.settings).toEqual(expect.arrayContaining([expect.objectContaining({ setting: "net.core.somaxconn", current: 1000, wanted: 8192 })]));
  expect(changes?.services).toEqual(expect.arrayContaining([expect.objectContaining({ unit: "php8.2-fpm", action: "reload" })]));
  await stack.up({ onOutput: () => undefined });
  expect(somaxconn(host)).toBe(8192);
  // The socket listened again with the full backlog (re-listen; php-fpm reloaded for pm.max_children).
  expect(socketBacklog(host, "/run/php/php8.2-fpm.sock")).toBe(8192);
  // What the run repaired: the pool's diff in the stack output, not twice more in the settings resource's state.
  const repaired = (await stack.outputs()).changes.value[host] as { files: { path: string; diff: string }[] };
  expect(repaired.files.map((f) => f.diff).join("")).toMatch(/\+pm\.max_children = \d+/);
  const state = await stack.exportStack();
  const settings = state.deployment.resources.find((r: { urn: string }) => r.urn.endsWith(`::backlog-${host}-settings`));
  for (const part of [settings.inputs, settings.outputs]) {
    expect(part.run.changes.files.map((f: { path: string; diff: string }) => [f.path, f.diff])).toEqual(repaired.files.map((f) => [f.path, ""]));
  }
});

test("pulumi refresh reports a value changed by hand on the host's settings resource", async () => {
  const host = lab.hosts[2].name;
  lab.sh(host, "sysctl -w net.ipv4.tcp_max_syn_backlog=128 >/dev/null");
  const refresh = await stack.refresh({ onOutput: () => undefined });
  expect(refresh.summary.resourceChanges?.update).toBeGreaterThanOrEqual(1);
  const state = await stack.exportStack();
  const settingsOf = (name: string) => state.deployment.resources.find((r: { urn: string }) => r.urn.endsWith(`::backlog-${name}-settings`));
  const settings = settingsOf(host);
  // The provider's code is not in the state: a module that loads the compiled program's provider,
  // relative to the project (refresh just ran through it, in the engine's own process).
  expect(settings.inputs.__provider).toContain('var spec = "./.build/src/pulumi/hostSettingsProvider.js"');
  expect(settings.inputs.__provider.length).toBeLessThan(1200);
  expect(settings.outputs.inSync).toBe(false);
  expect(lab.hosts.filter((h) => h.name !== host).map((h) => settingsOf(h.name).outputs.inSync)).toEqual([true, true]);
  const row = settings.outputs.verification.find((r: { setting: string }) => r.setting === "net.ipv4.tcp_max_syn_backlog");
  expect(row).toEqual(expect.objectContaining({ expected: 8192, effective: 128, ok: false }));
  await stack.up({ onOutput: () => undefined });
  expect(lab.sh(host, "cat /proc/sys/net/ipv4/tcp_max_syn_backlog").trim()).toBe("8192");
});

test("a changed backlog converges and verifies on every host", async () => {
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile(16384)) });
  const result = await stack.up({ onOutput: () => undefined });
  // Each host's settings resource, plus the fleet, which records the profile; the host components
  // record no profile (their fleet does) and stay as they were: no state write for them.
  expect(result.summary.resourceChanges?.update).toBe(3 + 1);
  expect(result.summary.resourceChanges?.same).toBeGreaterThanOrEqual(3);
  const v = await verification();
  for (const h of lab.hosts) {
    expect(v[h.name].every((r) => r.ok && r.effective === 16384)).toBe(true);
    expect(socketBacklog(h.name, "/run/php/php8.2-fpm.sock")).toBe(16384);
  }
});

test("a host raised by hand above the profile keeps its value in mode atLeast, and is lowered in mode exact", async () => {
  const host = lab.hosts[0].name;
  lab.sh(host, "sysctl -w net.core.somaxconn=20000 >/dev/null");
  await stack.up({ onOutput: () => undefined });
  expect(somaxconn(host)).toBe(20000);
  expect(lab.sh(host, "cat /etc/sysctl.d/zz-pulumi-backlog.conf")).toMatch(/net\.core\.somaxconn = 20000/);
  expect(somaxconn(lab.hosts[2].name)).toBe(16384);
  // And the next deploy keeps it too: the kept value stays the host's own.
  await stack.up({ expectNoChanges: true, onOutput: () => undefined });
  expect(somaxconn(host)).toBe(20000);

  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile(16384, { mode: "exact" })) });
  await stack.up({ onOutput: () => undefined });
  expect(somaxconn(host)).toBe(16384);
});

test("a lowered profile lowers the hosts again: values the library set are not taken for the host's own", async () => {
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile(8192)) });
  await stack.up({ onOutput: () => undefined });
  for (const h of lab.hosts) {
    expect(somaxconn(h.name)).toBe(8192);
    expect(socketBacklog(h.name, "/run/php/php8.2-fpm.sock")).toBe(8192);
  }
});

test("destroy brings back the original files and kernel values on every host", async () => {
  await stack.destroy({ onOutput: () => undefined });
  for (const h of lab.hosts) {
    const now = lab.sh(
      h.name,
      "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog; sha256sum /etc/php/8.2/fpm/pool.d/www.conf; ls /etc/sysctl.d /etc/nginx/conf.d",
    );
    expect(now).toBe(original[h.name]);
    expect(lab.sh(h.name, "ls -A /var/lib/pulumi-backlog 2>/dev/null | wc -l").trim()).toBe("0");
  }
});
