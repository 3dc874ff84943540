/**
 * The pack's two per-host stack policies, over simulated previews: the resource phase sees each
 * component's inputs, the stack phase only its outputs (as with the real engine).
 */
import { SOMAXCONN } from "../../../src/core/profile";
import { InputLog, POLICY } from "../../../policy/policies";
import { FLEET, HOST, type FakeResource, connection, sysctls, hostInputs, of, preview, profile, urn, web } from "./harness";

/** An AWS component (SSM document and association, src/aws/): no SSH connection, so its own host. */
const AWS = "backlog:index:BacklogSsmAssociation";
const at = (name: string, p: ReturnType<typeof profile>, conn = connection(), parent?: string): FakeResource => ({
  type: HOST,
  name,
  parent,
  inputs: hostInputs(p, conn),
});

describe(POLICY.withinSomaxconn, () => {
  test("passes one component per host, and several components with the same profile on one host", () => {
    const v = preview([
      at("a", profile(web("small", 1024)), connection({ port: 2201 })),
      at("b", profile(web("big", 8192)), connection({ port: 2202 })),
      at("c", profile(web("big", 8192)), connection({ port: 2202, user: "deploy" })),
    ]);
    expect(of(v, POLICY.withinSomaxconn)).toEqual([]);
  });

  test("catches two components aiming different profiles at the same host:port", () => {
    const v = preview([
      at("small", profile(web("small", 1024))),
      at("big", profile(web("big", 4096)), connection({ user: "admin" })), // another user, same machine
    ]);
    expect(of(v, POLICY.withinSomaxconn)).toEqual([
      {
        policy: POLICY.withinSomaxconn,
        urn: urn(HOST, "big"),
        message:
          'BacklogHost "big" (profile "big") and BacklogHost "small" (profile "small") both manage the host 127.0.0.1:2201: ' +
          "each writes net.core.somaxconn there and the one deployed last wins. With net.core.somaxconn 1024 from " +
          'BacklogHost "small" (profile "small"), BacklogHost "big" (profile "big") has backlog = 4096: exceeds somaxconn 1024 ' +
          "(derived): listen() would silently truncate it to 1024. Fix: manage each host with one profile (one component), or " +
          "make the two agree: lower the backlog to at most 1024. [rule backlog-within-somaxconn]",
      },
    ]);
  });

  test("names the explicit backlogs that do not fit", () => {
    const big = profile({ name: "big", backlog: 1024, somaxconn: 8192, pools: [{ name: "www", listen: "/run/php/www.sock", backlog: 8192 }] });
    const v = of(preview([at("small", profile(web("small", 2048))), at("big", big)]), POLICY.withinSomaxconn);
    expect(v.map((x) => x.message)).toEqual([expect.stringContaining("has pools[0].backlog = 8192: exceeds somaxconn 2048 (derived)")]);
  });

  test("treats the same address behind two bastions as two hosts, and host names case-insensitively", () => {
    const bastion = (host: string) => ({ host, port: 22, user: "jump", hostKey: null, insecureIgnoreHostKey: false });
    const apart = preview([
      at("a", profile(web("small", 1024)), connection({ host: "10.0.0.5", port: 22, proxy: bastion("bastion-a") })),
      at("b", profile(web("big", 4096)), connection({ host: "10.0.0.5", port: 22, proxy: bastion("bastion-b") })),
    ]);
    expect(of(apart, POLICY.withinSomaxconn)).toEqual([]);
    const together = preview([
      at("a", profile(web("small", 1024)), connection({ host: "Web1.example.com", port: 22 })),
      at("b", profile(web("big", 4096)), connection({ host: "web1.example.com", port: 22 })),
    ]);
    expect(of(together, POLICY.withinSomaxconn).map((x) => x.message)).toEqual([expect.stringContaining("both manage the host web1.example.com:22")]);
  });

  test("checks a component's own profile with the library rule (a hand-built AWS profile)", () => {
    const p = profile(web("aws", 1024, { somaxconn: 4096 }));
    (p.listeners[0] as { backlog: number; backlogSource: string }).backlog = 8192;
    (p.listeners[0] as { backlogSource: string }).backlogSource = "listener";
    const v = preview([{ type: AWS, name: "doc", inputs: { profile: p } }]);
    expect(of(v, POLICY.withinSomaxconn)).toEqual([
      {
        policy: POLICY.withinSomaxconn,
        urn: urn(AWS, "doc"),
        message:
          'BacklogSsmAssociation "doc" (profile "aws"): listeners[0].backlog = 8192: exceeds somaxconn 4096 (override): listen() would ' +
          "silently truncate it to 4096. Fix: raise somaxconn to at least 8192, or remove the somaxconn override so it is derived. " +
          "[rule backlog-within-somaxconn]",
      },
    ]);
  });

  test("does not repeat a fleet's problem when its hosts are checked", () => {
    const p = profile(web("hand", 1024, { somaxconn: 1024 }));
    (p.pools[0] as { backlog: number; backlogSource: string }).backlog = 2048;
    (p.pools[0] as { backlogSource: string }).backlogSource = "pool";
    const v = of(
      preview([{ type: FLEET, name: "fleet", inputs: { profile: p, hosts: ["h1"] } }, at("fleet-h1", p, connection(), "fleet")]),
      POLICY.withinSomaxconn,
    );
    expect(v.map((x) => x.urn)).toEqual([urn(HOST, "fleet-h1")]);
    expect(v[0]?.message).toMatch(/^BacklogHost "fleet-h1" \(profile "hand"\) at 127\.0\.0\.1:2201: pools\[0\]\.backlog = 2048: exceeds somaxconn 1024/);
  });

  test("checks a fleet's hosts, which record no profile of their own, with their fleet's profile", () => {
    const p = profile(web("hand", 1024, { somaxconn: 1024 }));
    (p.pools[0] as { backlog: number; backlogSource: string }).backlog = 2048;
    (p.pools[0] as { backlogSource: string }).backlogSource = "pool";
    const { profile: _, ...member } = hostInputs(p, connection({ port: 2201 }));
    const fleet: FakeResource = { type: FLEET, name: "fleet", inputs: { profile: p, hosts: ["h1", "h2"] } };
    const hosts: FakeResource[] = [
      { type: HOST, name: "fleet-h1", parent: "fleet", inputs: member },
      { type: HOST, name: "fleet-h2", parent: "fleet", inputs: { ...member, connection: connection({ port: 2202 }) } },
    ];
    const expected = [urn(HOST, "fleet-h1"), urn(HOST, "fleet-h2")];
    const v = of(preview([fleet, ...hosts]), POLICY.withinSomaxconn);
    expect(v.map((x) => x.urn)).toEqual(expected);
    expect(v[1]?.message).toMatch(/^BacklogHost "fleet-h2" \(profile "hand"\) at 127\.0\.0\.1:2202: pools\[0\]\.backlog = 2048: exceeds somaxconn 1024/);
    // Read from the outputs alone (no resource policy ran): what the components register.
    const registered = [{ ...fleet, outputs: { profile: p, rollout: [["h1", "h2"]], absent: {} } }, ...hosts.map((h) => ({ ...h, outputs: h.inputs }))];
    expect(of(preview(registered, { skipResourcePhase: true }), POLICY.withinSomaxconn).map((x) => x.urn)).toEqual(expected);
  });

  test("compares a fleet's host with another component on the same machine by the fleet's profile", () => {
    const big = profile(web("big", 4096));
    const { profile: _, ...member } = hostInputs(big);
    const v = preview([
      { type: FLEET, name: "fleet", inputs: { profile: big, hosts: ["h1"] } },
      { type: HOST, name: "fleet-h1", parent: "fleet", inputs: member },
      at("small", profile(web("small", 1024))),
    ]);
    expect(of(v, POLICY.withinSomaxconn).map((x) => x.message)).toEqual([
      expect.stringMatching(/^BacklogHost "fleet-h1" \(profile "big"\) and BacklogHost "small" \(profile "small"\) both manage the host 127\.0\.0\.1:2201/),
    ]);
  });

  test("reads a component's profile from its outputs when it registers it there", () => {
    const small = profile(web("small", 1024));
    const big = profile(web("big", 4096));
    const outputs = (p: typeof small) => ({ profile: p, connection: connection(), verification: [] });
    const v = preview(
      [
        { type: HOST, name: "small", inputs: {}, outputs: outputs(small) },
        { type: HOST, name: "big", inputs: {}, outputs: outputs(big) },
      ],
      { skipResourcePhase: true },
    );
    expect(of(v, POLICY.withinSomaxconn).map((x) => x.urn)).toEqual([urn(HOST, "big")]);
  });

  test("says so when it cannot see a component's inputs (every resource policy disabled)", () => {
    const v = preview([at("small", profile(web("small", 1024)))], { skipResourcePhase: true });
    expect(of(v, POLICY.withinSomaxconn).map((x) => x.message)).toEqual([
      'cannot check BacklogHost "small": a stack policy sees only a component\'s outputs, and the inputs of these components ' +
        "(profile, connection) were not recorded because no resource policy of this pack ran on them. Fix: enable at least " +
        "one resource policy of the pack (e.g. backlog-values-accepted).",
    ]);
  });

  test("uses the inputs the resource phase recorded in the same pack instance", () => {
    const log = new InputLog();
    const resources = [at("small", profile(web("small", 1024))), at("big", profile(web("big", 4096)))];
    preview(resources, { log });
    // A second stack phase with the same log but no resource phase still sees both components.
    expect(of(preview(resources, { log, skipResourcePhase: true }), POLICY.withinSomaxconn)).toHaveLength(1);
  });
});

describe(POLICY.synQueue, () => {
  test("passes a SYN queue that covers every TCP listener, and unix-only pools with a short SYN queue", () => {
    expect(of(preview([at("a", profile(web("web", 4096)))]), POLICY.synQueue)).toEqual([]);
    const unixOnly = profile({ name: "unix", backlog: 4096, tcpMaxSynBacklog: 128, pools: [{ name: "www", listen: "/run/php/www.sock" }] });
    expect(of(preview([at("a", unixOnly)]), POLICY.synQueue)).toEqual([]);
  });

  test("reports a component's own SYN queue below its TCP listeners (library rule)", () => {
    const p = profile(web("web", 1024, { tcpMaxSynBacklog: 1024 }));
    sysctls(p)["net.ipv4.tcp_max_syn_backlog"] = 512;
    const v = of(preview([{ type: AWS, name: "doc", inputs: { profile: p } }]), POLICY.synQueue);
    expect(v.map((x) => x.message)).toEqual([
      'BacklogSsmAssociation "doc" (profile "web"): tcpMaxSynBacklog = 512: tcp_max_syn_backlog 512 (override) is below the largest TCP ' +
        "listener backlog 1024 (listeners[0].backlog). Fix: raise tcpMaxSynBacklog to at least 1024, or remove the override so " +
        "it follows somaxconn. [rule syn-backlog-covers-tcp]",
    ]);
  });

  test("catches another component's shorter SYN queue on the same host", () => {
    const shortSyn = profile(web("short-syn", 1024, { somaxconn: 8192, tcpMaxSynBacklog: 1024 }));
    const big = profile(web("big", 8192));
    expect(big.sysctls[SOMAXCONN]).toBe(8192);
    const v = preview([at("short", shortSyn), at("big", big)]);
    expect(of(v, POLICY.withinSomaxconn)).toEqual([]);
    expect(of(v, POLICY.synQueue)).toEqual([
      {
        policy: POLICY.synQueue,
        urn: urn(HOST, "big"),
        message:
          'BacklogHost "big" (profile "big") and BacklogHost "short" (profile "short-syn") both manage the host 127.0.0.1:2201: ' +
          "each writes net.ipv4.tcp_max_syn_backlog there and the one deployed last wins. With net.ipv4.tcp_max_syn_backlog 1024 " +
          'from BacklogHost "short" (profile "short-syn"), BacklogHost "big" (profile "big") has tcpMaxSynBacklog = 1024: ' +
          "tcp_max_syn_backlog 1024 (override) is below the largest TCP listener backlog 8192 (listeners[0].backlog). Fix: manage " +
          "each host with one profile (one component), or make the two agree: raise tcpMaxSynBacklog to at least 8192, or remove " +
          "the override so it follows somaxconn. [rule syn-backlog-covers-tcp]",
      },
    ]);
  });
});
