/** The pack as a whole: names, metadata, config schema, and that it applies every library rule. */
import { rules } from "../../../src/core/profile";
import { CONFIG_DEFAULTS, HOST_RULES, InputLog, PACK_NAME, POLICY, PROFILE_RULES, createPolicies } from "../../../policy/policies";
import { HOST, connection, hostInputs, preview, profile, resourceArgs, web } from "./harness";

describe("the pulumi-backlog policy pack", () => {
  const policies = createPolicies();

  test("has the documented policies, each named, described, with a remediation and a level", () => {
    expect(PACK_NAME).toMatch(/^[a-zA-Z0-9-_.]{1,100}$/);
    expect(policies.map((p) => p.name)).toEqual(Object.values(POLICY));
    for (const p of policies) {
      expect(p.description.length).toBeGreaterThan(40);
      expect(p.remediationSteps.length).toBeGreaterThan(40);
      expect(["advisory", "mandatory"]).toContain(p.enforcementLevel);
      expect(p.name).not.toBe("all");
    }
  });

  test("runs every rule of the library exactly once: the per-host rules in the stack policies, the rest per component", () => {
    const used = [...PROFILE_RULES.map((r) => r.id), ...Object.values(HOST_RULES)].sort();
    expect(used).toEqual(rules.map((r) => r.id).sort());
    // The same function objects as the library's, not copies.
    for (const r of PROFILE_RULES) expect(rules).toContain(r);
  });

  test("documents every config property with a default equal to the code's", () => {
    const schemas = Object.fromEntries(policies.filter((p) => p.configSchema).map((p) => [p.name, p.configSchema?.properties]));
    expect(schemas[POLICY.minimums]?.minBacklog?.default).toBe(CONFIG_DEFAULTS.minBacklog);
    expect(schemas[POLICY.minimums]?.minSomaxconn?.default).toBe(CONFIG_DEFAULTS.minSomaxconn);
    expect(schemas[POLICY.dropInOrder]?.sortAfter?.default).toBe(CONFIG_DEFAULTS.sortAfter);
    for (const props of Object.values(schemas)) {
      for (const [key, schema] of Object.entries(props ?? {})) {
        expect(key).not.toBe("enforcementLevel");
        expect(schema.description.length).toBeGreaterThan(10);
      }
    }
  });

  test("a sound deployment (the lab stack's profile on separate hosts) passes every policy", () => {
    const lab = profile({
      name: "lab-web",
      backlog: 8192,
      pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", pm: { maxChildren: 8 } }],
      listeners: [{ listen: 8080, pool: "www" }],
    });
    const member = (c: ReturnType<typeof connection>) => {
      const { profile: _, ...rest } = hostInputs(lab, c);
      return rest;
    };
    const v = preview([
      { type: "backlog:index:BacklogFleet", name: "backlog", inputs: { profile: lab, hosts: ["lab1", "lab2"] } },
      // A fleet's hosts record no profile: the fleet records it once.
      { type: HOST, name: "backlog-lab1", parent: "backlog", inputs: member(connection({ port: 40001 })) },
      { type: HOST, name: "backlog-lab2", parent: "backlog", inputs: member(connection({ port: 40002 })) },
      { type: "pulumi-nodejs:dynamic:Resource", name: "backlog-lab1-settings", parent: "backlog-lab1", inputs: { connection: { privateKey: "secret" } } },
    ]);
    expect(v).toEqual([]);
  });

  test("the input log records backlog components only", () => {
    const log = new InputLog();
    log.record(resourceArgs({ type: "aws:ec2/instance:Instance", name: "i", inputs: {} }));
    log.record(resourceArgs({ type: HOST, name: "h", inputs: hostInputs(profile(web("w", 1024))) }));
    expect(log.get("urn:pulumi:test::pulumi-backlog::aws:ec2/instance:Instance::i")).toBeUndefined();
    expect(log.get(`urn:pulumi:test::pulumi-backlog::${HOST}::h`)).toEqual(expect.objectContaining({ connection: expect.any(Object) }));
  });
});
