/** The pack's resource policies, each called directly with fake ResourceValidationArgs. */
import { SOMAXCONN, TCP_MAX_SYN_BACKLOG } from "../../../src/core/profile";
import { DEBIAN_12_PATHS, SYSCTL_DROPIN_PATH } from "../../../src/core/render";
import { POLICY } from "../../../policy/policies";
import { FLEET, HOST, checkResource, sysctls, connection, hostInputs, hostKey, policyNamed, profile, web } from "./harness";

const host = (inputs: Record<string, unknown>, name = "web-1") => ({ type: HOST, name, inputs });
/** An AWS component (launch template user data, src/aws/): the policies know it only by token and props. */
const AWS = "backlog:index:BacklogLaunchTemplate";

describe(POLICY.valuesAccepted, () => {
  const policy = policyNamed(POLICY.valuesAccepted);

  test("passes a profile made by defineProfile", () => {
    expect(checkResource(policy, host(hostInputs(profile(web("web", 8192)))))).toEqual([]);
  });

  test("does not apply to other resources or to backlog components without a profile", () => {
    expect(checkResource(policy, { type: "aws:s3/bucket:Bucket", name: "b", inputs: { profile: {} } })).toEqual({ notApplicable: expect.any(String) });
    expect(checkResource(policy, { type: "backlog:index:Other", name: "o", inputs: { hosts: [] } })).toEqual({ notApplicable: expect.any(String) });
  });

  test.each([
    ["pools[0].backlog", -1],
    ["pools[0].backlog", 0],
    ["listeners[0].backlog", 0],
    ["listeners[0].backlog", -5],
  ])("rejects %s = %d on any backlog:index:* component with a profile (php-fpm's -1, nginx's 0)", (path, value) => {
    const p = profile(web("aws-web", 1024));
    const [list, index] = path.split(/[[\].]+/) as ["pools" | "listeners", string];
    Object.assign(p[list][Number(index)] as object, { backlog: value, backlogSource: list === "pools" ? "pool" : "listener" });
    const out = checkResource(policy, { type: AWS, name: "web-template", inputs: { profile: p } });
    expect(out).toEqual([
      `BacklogLaunchTemplate "web-template" (profile "aws-web"): ${path} = ${value}: ${path.startsWith("pools") ? "listen.backlog" : "nginx backlog="} ` +
        `must be between 1 and 65535. Fix: raise it to at least 1; -1/0 ("use the default") are not accepted: give the number. [rule backlog-range]`,
    ]);
  });

  test("rejects kernel values the kernel would refuse", () => {
    const p = profile(web("web", 1024));
    sysctls(p)[SOMAXCONN] = 70000;
    sysctls(p)[TCP_MAX_SYN_BACKLOG] = 0;
    const out = checkResource(policy, host(hostInputs(p))) as string[];
    expect(out).toContainEqual(expect.stringContaining("somaxconn = 70000: net.core.somaxconn must be between 1 and 65535"));
    expect(out).toContainEqual(expect.stringContaining("tcpMaxSynBacklog = 0: net.ipv4.tcp_max_syn_backlog must be between 1 and 2147483647"));
  });

  test("applies the library's other rules too, e.g. php-fpm's own pm checks", () => {
    const p = profile(web("web", 1024));
    (p.pools[0] as { pm: { maxChildren: number } }).pm.maxChildren = 0;
    expect(checkResource(policy, host(hostInputs(p)))).toContainEqual(
      expect.stringMatching(
        /^BacklogHost "web-1" \(profile "web"\): pools\[0\]\.pm\.maxChildren = 0: pm\.max_children must be between 1 and .*\[rule pm-consistency\]$/,
      ),
    );
  });

  test("leaves backlog > somaxconn to the per-host stack policy", () => {
    const p = profile(web("web", 1024, { somaxconn: 4096 }));
    (p.pools[0] as { backlog: number; backlogSource: string }).backlog = 8192;
    (p.pools[0] as { backlogSource: string }).backlogSource = "pool";
    expect(checkResource(policy, host(hostInputs(p)))).toEqual([]);
  });

  test("reports a profile that is not a derived one instead of crashing", () => {
    const out = checkResource(policy, { type: AWS, name: "t", inputs: { profile: { name: "raw", backlog: 1024 } } });
    expect(out).toEqual([
      'BacklogLaunchTemplate "t" (profile "raw"): its profile cannot be checked: it has no sysctls, sources, pools[], listeners[]: ' +
        "it is not what defineProfile returns. Fix: record the result of defineProfile(...) as the component's profile.",
    ]);
  });

  test("lets an unknown value (preview) escape, so @pulumi/policy reports 'can't run during preview'", () => {
    class UnknownValueError extends Error {}
    const props = new Proxy(
      { profile: undefined },
      {
        get: (t, k) => {
          if (k === "profile") throw new UnknownValueError("unknown");
          return (t as Record<string | symbol, unknown>)[k];
        },
      },
    );
    expect(() => checkResource(policy, { type: HOST, name: "h", inputs: props })).toThrow(UnknownValueError);
  });
});

describe(POLICY.minimums, () => {
  const policy = policyNamed(POLICY.minimums);

  test("passes with the defaults when the backlog is at least 511 and somaxconn at least 1024", () => {
    expect(checkResource(policy, host(hostInputs(profile(web("web", 1024)))))).toEqual([]);
    expect(checkResource(policy, host(hostInputs(profile(web("web", 600, { somaxconn: 2048 })))))).toEqual([]);
  });

  test("reports a short profile backlog once, with what inherits it, and the derived somaxconn", () => {
    expect(checkResource(policy, host(hostInputs(profile(web("tiny", 64)))))).toEqual([
      'BacklogHost "web-1" (profile "tiny"): the profile backlog 64 is below the minimum 511 (config minBacklog); ' +
        "pools[0].backlog, listeners[0].backlog inherit it: a burst of more than 64 connections waiting to be accepted is refused " +
        "(EAGAIN on a unix socket, nginx 502) or its SYNs dropped. Fix: raise backlog to at least 511.",
      'BacklogHost "web-1" (profile "tiny"): net.core.somaxconn 64 (derived from the largest backlog) is below the minimum 1024 ' +
        "(config minSomaxconn): it caps the accept queue of every listening socket on the host, not only the profile's. " +
        "Fix: give somaxconn: 1024 (or more) in the profile, or raise its backlog.",
    ]);
  });

  test("reports an explicit pool or listener backlog below the minimum", () => {
    const p = profile(
      web("web", 4096, {
        pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", backlog: 100 }],
        listeners: [{ listen: 8080, pool: "www", backlog: 200 }],
      }),
    );
    expect(checkResource(policy, host(hostInputs(p)))).toEqual([
      'BacklogHost "web-1" (profile "web"): pools[0].backlog (php-fpm listen.backlog) 100 is below the minimum 511 (config minBacklog). ' +
        "Fix: raise it to at least 511, or leave it out so it inherits the profile backlog.",
      'BacklogHost "web-1" (profile "web"): listeners[0].backlog (nginx backlog=) 200 is below the minimum 511 (config minBacklog). ' +
        "Fix: raise it to at least 511, or leave it out so it inherits the profile backlog.",
    ]);
  });

  test("takes its thresholds from the policy config", () => {
    const tiny = host(hostInputs(profile(web("tiny", 64))));
    expect(checkResource(policy, tiny, { minBacklog: 64, minSomaxconn: 64 })).toEqual([]);
    expect(checkResource(policy, host(hostInputs(profile(web("web", 1024)))), { minSomaxconn: 2048 })).toEqual([
      expect.stringContaining("net.core.somaxconn 1024 (derived from the largest backlog) is below the minimum 2048 (config minSomaxconn)"),
    ]);
  });

  test("leaves values below 1 to backlog-values-accepted", () => {
    const p = profile(web("web", 1024));
    (p.pools[0] as { backlog: number }).backlog = -1;
    expect(checkResource(policy, host(hostInputs(p)))).toEqual([]);
  });

  test("applies to a fleet's profile as well", () => {
    expect(checkResource(policy, { type: FLEET, name: "fleet", inputs: { profile: profile(web("tiny", 100)), hosts: ["a"] } })).toContainEqual(
      expect.stringContaining('BacklogFleet "fleet" (profile "tiny"): the profile backlog 100 is below the minimum 511'),
    );
    // Its hosts record no profile: the fleet's is reported once, not once per host.
    const { profile: _, ...member } = hostInputs(profile(web("tiny", 100)));
    expect(checkResource(policy, { type: HOST, name: "fleet-a", parent: "fleet", inputs: member })).toEqual({ notApplicable: expect.any(String) });
  });
});

describe(POLICY.hostKey, () => {
  const policy = policyNamed(POLICY.hostKey);
  const p = profile(web("web", 1024));

  test("passes a pinned host key, also through a pinned bastion", () => {
    expect(checkResource(policy, host(hostInputs(p)))).toEqual([]);
    const bastion = { host: "bastion.example.com", port: 22, user: "jump", hostKey: hostKey(2), insecureIgnoreHostKey: false };
    expect(checkResource(policy, host(hostInputs(p, connection({ proxy: bastion }))))).toEqual([]);
  });

  test("does not apply to components without a connection", () => {
    expect(checkResource(policy, { type: FLEET, name: "f", inputs: { profile: p, hosts: [] } })).toEqual({ notApplicable: expect.any(String) });
  });

  test("rejects insecureIgnoreHostKey", () => {
    expect(checkResource(policy, host(hostInputs(p, connection({ hostKey: null, insecureIgnoreHostKey: true }))))).toEqual([
      'BacklogHost "web-1": connection to root@127.0.0.1:2201 sets insecureIgnoreHostKey: the SSH host key is not checked, ' +
        "so anyone on the path can impersonate the host and receive the deployment's scripts. Fix: set connection.hostKey to " +
        "the host's public key line and remove insecureIgnoreHostKey.",
    ]);
  });

  test("rejects a missing host key", () => {
    expect(checkResource(policy, host(hostInputs(p, connection({ hostKey: null }))))).toEqual([
      'BacklogHost "web-1": connection to root@127.0.0.1:2201 has no hostKey: the host\'s identity is not pinned. ' +
        'Fix: set connection.hostKey to the host\'s public key line ("ssh-ed25519 AAAA…").',
    ]);
  });

  test("rejects a host key the library could not use (same parser as the library)", () => {
    expect(checkResource(policy, host(hostInputs(p, connection({ hostKey: "ssh-ed25519 not-base64!" }))))).toEqual([
      expect.stringContaining("connection to root@127.0.0.1:2201: hostKey line 1 is not an OpenSSH public key line"),
    ]);
  });

  test("checks the bastion too", () => {
    const bastion = { host: "10.0.0.1", port: 2222, user: "jump", hostKey: null, insecureIgnoreHostKey: true };
    expect(checkResource(policy, host(hostInputs(p, connection({ proxy: bastion }))))).toEqual([
      expect.stringMatching(
        /^BacklogHost "web-1": connection\.proxy \(bastion\) to jump@10\.0\.0\.1:2222 sets insecureIgnoreHostKey: .*Fix: set connection\.proxy\.hostKey/,
      ),
    ]);
  });
});

describe(POLICY.dropInOrder, () => {
  const policy = policyNamed(POLICY.dropInOrder);
  const p = profile(web("web", 1024));
  const at = (sysctlDropIn: string) => host(hostInputs(p, connection(), { sysctlDropIn }));

  test("passes the library's default drop-in", () => {
    expect(DEBIAN_12_PATHS.sysctlDropIn).toBe(SYSCTL_DROPIN_PATH);
    expect(checkResource(policy, host(hostInputs(p)))).toEqual([]);
    expect(checkResource(policy, at("/etc/sysctl.d/Z-backlog.conf"))).toEqual([]); // 'Z' sorts after '9' in byte order
  });

  test("does not apply to components without paths", () => {
    expect(checkResource(policy, { type: FLEET, name: "f", inputs: { profile: p, hosts: [] } })).toEqual({ notApplicable: expect.any(String) });
  });

  test("applies to AWS components too (they record paths)", () => {
    const inputs = { profile: p, paths: { ...DEBIAN_12_PATHS, sysctlDropIn: "/etc/sysctl.d/10-backlog.conf" }, services: {}, userDataBytes: 1234 };
    expect(checkResource(policy, { type: AWS, name: "lt", inputs })).toEqual([
      expect.stringMatching(
        /^BacklogLaunchTemplate "lt": paths\.sysctlDropIn = "\/etc\/sysctl\.d\/10-backlog\.conf": its file name "10-backlog\.conf" does not sort after/,
      ),
    ]);
  });

  test("rejects a name that sorts before (or is) 99-sysctl.conf", () => {
    const message = (file: string) =>
      `BacklogHost "web-1": paths.sysctlDropIn = "/etc/sysctl.d/${file}": its file name "${file}" does not sort after "99-sysctl.conf", ` +
      "so at boot a file read after it (99-sysctl.conf is /etc/sysctl.conf on Debian) can set the same key and win over the " +
      "profile's values. Fix: use /etc/sysctl.d/zz-pulumi-backlog.conf (the default) or another name in /etc/sysctl.d that sorts after 99-sysctl.conf.";
    expect(checkResource(policy, at("/etc/sysctl.d/50-backlog.conf"))).toEqual([message("50-backlog.conf")]);
    expect(checkResource(policy, at("/etc/sysctl.d/99-sysctl.conf"))).toEqual([message("99-sysctl.conf")]);
  });

  test("rejects a drop-in outside /etc/sysctl.d or not named *.conf", () => {
    expect(checkResource(policy, at("/run/sysctl.d/zz-backlog.conf"))).toEqual([
      expect.stringContaining('paths.sysctlDropIn = "/run/sysctl.d/zz-backlog.conf" is not directly in /etc/sysctl.d'),
    ]);
    expect(checkResource(policy, at("/etc/sysctl.d/zz-backlog"))).toEqual([
      expect.stringContaining('paths.sysctlDropIn = "/etc/sysctl.d/zz-backlog" does not end in .conf: systemd-sysctl ignores it at boot'),
    ]);
  });

  test("takes the name to sort after from the policy config", () => {
    expect(checkResource(policy, at("/etc/sysctl.d/50-backlog.conf"), { sortAfter: "40-local.conf" })).toEqual([]);
    expect(checkResource(policy, host(hostInputs(p)), { sortAfter: "zzz.conf" })).toEqual([
      expect.stringContaining('its file name "zz-pulumi-backlog.conf" does not sort after "zzz.conf"'),
    ]);
  });
});
