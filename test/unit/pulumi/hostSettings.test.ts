/**
 * HostSettings' inputs made from a decision (pure), and the shim the engine stores in place of the
 * provider's code. The provider itself: hostSettingsProvider.test.ts.
 */
import type * as pulumi from "@pulumi/pulumi";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Module = require("node:module");
import { applyPlanOf, decisionInputs, hasChanges, plannedActions, providerModule, providerSpecifier, runWithPlace } from "../../../src/pulumi/hostSettings";
import { EMPTY_RUN, ROLLOUT_PLACE, tempDir } from "../fixtures";

const place = ROLLOUT_PLACE;
const emptyRun = EMPTY_RUN;

test("runWithPlace: the place rides in run; a host without a decision gets a run that changes nothing", () => {
  expect(runWithPlace(emptyRun, undefined)).toBe(emptyRun);
  expect(runWithPlace(undefined, undefined)).toBeUndefined();
  expect(runWithPlace(emptyRun, place)).toEqual({ ...emptyRun, rolloutPlace: place });
  const bare = runWithPlace(undefined, place)!;
  expect(bare.rolloutPlace).toEqual(place);
  expect(hasChanges({ run: bare })).toBe(false);
});

test("plannedActions: the action per unit, empty without a plan", () => {
  expect(plannedActions(undefined)).toEqual({});
  expect(
    plannedActions({
      services: [
        { unit: "php8.2-fpm", test: ["php-fpm8.2", "-t"], action: "relisten", relisten: [{ inode: 1, backlog: 2, oldBacklog: 1, label: "/run/php/x.sock" }] },
        { unit: "nginx", test: ["nginx", "-t"], action: "none" },
      ],
    }),
  ).toEqual({ "php8.2-fpm": "relisten", nginx: "none" });
});

test("decisionInputs: the plan without the run's own parts, and the changes as fields of their own; applyPlanOf puts the plan back together", () => {
  const plan = {
    stateDir: "/var/lib/pulumi-backlog",
    owner: "web1",
    sysctlKeys: ["net.core.somaxconn"],
    sockets: { unixPaths: ["/run/php/a.sock"], tcpPorts: [] },
    files: [{ path: "/etc/php/8.2/fpm/pool.d/www.conf", content: "listen.backlog = 8192\n", mode: "0644", owner: "root", group: "root" }],
    services: [
      {
        unit: "php8.2-fpm",
        test: ["php-fpm8.2", "-t"],
        action: "relisten" as const,
        reason: "only the backlog changes",
        relisten: [{ inode: 7, backlog: 8192, oldBacklog: 1000, label: "/run/php/a.sock" }],
        ports: [],
      },
      { unit: "nginx", test: ["nginx", "-t"], action: "none" as const, ports: [8080] },
    ],
    retired: ["/etc/php/8.2/fpm/pool.d/old.conf"],
    generation: 4,
  };
  const changes = {
    settings: [
      { setting: "net.core.somaxconn", current: 1000, wanted: 8192, comparison: "equal" as const },
      { setting: "sock", current: null, wanted: 8192, comparison: "atLeast" as const },
    ],
    files: [
      {
        path: "/etc/php/8.2/fpm/pool.d/www.conf",
        change: "update" as const,
        diff: "--- host\n+++ profile\n@@ -1 +1 @@\n-listen.backlog = 511\n+listen.backlog = 8192\n",
      },
    ],
    retired: plan.retired,
    services: [],
    recovers: false,
  };
  const inputs = decisionInputs({ plan, changes }, true);
  expect(inputs.settings).toEqual({ "net.core.somaxconn": "1000 → 8192", sock: "missing → >=8192" });
  expect(inputs.files).toEqual({ "/etc/php/8.2/fpm/pool.d/www.conf": ["@@ -1 +1 @@", "-listen.backlog = 511", "+listen.backlog = 8192"] });
  expect(inputs.services).toEqual({ "php8.2-fpm": { action: "relisten", reason: "only the backlog changes" } });
  expect(inputs.retired).toEqual(plan.retired);
  expect(inputs.recovers).toBeUndefined();
  expect(inputs.run).toEqual({
    generation: 4,
    retired: plan.retired,
    changes,
    steps: { "php8.2-fpm": { action: "relisten", reason: "only the backlog changes", relisten: plan.services[0].relisten } },
  });
  // What stays in `plan` does not depend on the host's drift: the same for an in-sync host.
  const inSync = decisionInputs(
    {
      plan: { ...plan, services: plan.services.map((s) => ({ unit: s.unit, test: s.test, action: "none" as const, ports: s.ports })), retired: [] },
      changes: { settings: [], files: [], retired: [], services: [], recovers: false },
    },
    true,
  );
  expect(inSync.plan).toEqual(inputs.plan);
  expect(inSync).toEqual(
    expect.objectContaining({
      settings: {},
      files: {},
      services: {},
      retired: [],
      run: { generation: 4, steps: {}, retired: [], changes: { settings: [], files: [], retired: [], services: [], recovers: false } },
    }),
  );
  // `up` records the change fields empty (nothing is pending once its apply verified), the run's own
  // part as it is but for the files' diffs (outputs keep them; the state would hold them twice).
  const up = decisionInputs({ plan, changes }, false);
  expect(up).toEqual({
    ...inSync,
    run: { ...inputs.run, changes: { ...changes, files: [{ path: "/etc/php/8.2/fpm/pool.d/www.conf", change: "update", diff: "" }] } },
    plan: inputs.plan,
  });
  expect(changes.files[0].diff).toContain("+listen.backlog = 8192"); // the decision's own changes are untouched
  expect(applyPlanOf(inputs)).toEqual(plan);
  expect(applyPlanOf(up)).toEqual(plan);
  // A state of the earlier shape (the whole plan in `plan`) gives its plan as it was.
  expect(applyPlanOf({ plan })).toEqual(plan);
});

describe("providerSpecifier: what the engine's copy of the provider requires", () => {
  test("an installed package: its name and the internal export, from the last node_modules (pnpm's store too)", () => {
    expect(providerSpecifier("/p/node_modules/pulumi-backlog/dist/pulumi/hostSettingsProvider.js", "/p")).toBe(
      "pulumi-backlog/internal/pulumi/hostSettingsProvider.js",
    );
    expect(providerSpecifier("/p/node_modules/.pnpm/pulumi-backlog@0.1.0/node_modules/pulumi-backlog/dist/pulumi/hostSettingsProvider.js", "/elsewhere")).toBe(
      "pulumi-backlog/internal/pulumi/hostSettingsProvider.js",
    );
    expect(providerSpecifier("/p/node_modules/@acme/backlog/dist/pulumi/hostSettingsProvider.js", "/p")).toBe(
      "@acme/backlog/internal/pulumi/hostSettingsProvider.js",
    );
    // Installed, but not the package's dist/: nothing to name, the engine keeps the code.
    expect(providerSpecifier("/p/node_modules/pulumi-backlog/src/pulumi/hostSettingsProvider.js", "/p")).toBeUndefined();
  });

  test("this repository's compiled program: the path relative to the project folder", () => {
    expect(providerSpecifier("/repo/.build/src/pulumi/hostSettingsProvider.js", "/repo")).toBe("./.build/src/pulumi/hostSettingsProvider.js");
    expect(providerSpecifier("/repo/.build/src/pulumi/hostSettingsProvider.js", "/repo/examples/x")).toBe("../../.build/src/pulumi/hostSettingsProvider.js");
  });

  test("TypeScript sources: none (the engine keeps the provider's code by value)", () => {
    expect(providerSpecifier("/repo/src/pulumi/hostSettingsProvider.ts", "/repo")).toBeUndefined();
  });
});

describe("providerModule", () => {
  /** The module as the engine's process loads it (require-from-string): compiled in a module of its own, then `handler()`. */
  async function loadedModule(spec: string): Promise<pulumi.dynamic.ResourceProvider & { text: string }> {
    const text = providerModule(spec);
    const mod = new Module("provider-module") as Module & { _compile(code: string, file: string): void };
    mod._compile(text, "");
    return Object.assign((mod.exports as { handler: () => pulumi.dynamic.ResourceProvider }).handler(), { text });
  }

  test("carries nothing but where the provider is, and hands every call to what it loads from there", async () => {
    const dir = tempDir("shim");
    const impl = join(dir, "impl.js");
    writeFileSync(
      impl,
      `exports.hostSettingsProvider = Object.fromEntries(["check", "diff", "create", "update", "delete", "read"].map((m) => [m, async (...a) => ({ m, a })]));\n`,
    );
    const shim = await loadedModule(impl);
    // The provider's code is not in it (compare the ~110 KB of the provider by value, 2.7 KB serialized shim).
    expect(shim.text.length).toBeLessThan(1200);
    expect(shim.text).not.toMatch(/applyScript|runScript|ssh2/);
    await expect(shim.check!({ a: 1 }, { b: 2 })).resolves.toEqual({ m: "check", a: [{ a: 1 }, { b: 2 }] });
    await expect(shim.diff!("id", { a: 1 }, { b: 2 })).resolves.toEqual({ m: "diff", a: ["id", { a: 1 }, { b: 2 }] });
    await expect(shim.create!({ c: 3 })).resolves.toEqual({ m: "create", a: [{ c: 3 }] });
    await expect(shim.update!("id", { a: 1 }, { b: 2 })).resolves.toEqual({ m: "update", a: ["id", { a: 1 }, { b: 2 }] });
    await expect(shim.delete!("id", { a: 1 })).resolves.toEqual({ m: "delete", a: ["id", { a: 1 }] });
    await expect(shim.read!("id", { a: 1 })).resolves.toEqual({ m: "read", a: ["id", { a: 1 }] });
    // A relative specifier is the project folder's (the process's working folder).
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      await expect((await loadedModule("./impl.js")).create!({ c: 4 })).resolves.toEqual({ m: "create", a: [{ c: 4 }] });
    } finally {
      process.chdir(cwd);
    }
  });

  test("a provider that is not there: the path, the project folder and what to do, before anything else happens", async () => {
    const shim = await loadedModule("./.build/src/pulumi/no-such-provider.js");
    await expect(shim.create!({})).rejects.toThrow(
      /^pulumi-backlog: the HostSettings provider cannot be loaded from \/.*\/\.build\/src\/pulumi\/no-such-provider\.js \(project folder \/.*\): Cannot find module[\s\S]*npm run build:program/,
    );
  });
});
