/**
 * EC2 targets by tag, over SSH: the running instances tagged Role=web (configurable) become the
 * hosts of a BacklogFleet; each `pulumi up` probes them, applies the profile where it differs,
 * verifies /proc/sys and every listening socket, and fails with a table on a mismatch.
 * `pulumi destroy` gives each host back its original files and kernel values.
 *
 * Host keys stay pinned: each instance's key is read from the SSM parameter
 * /pulumi-backlog/host-keys/<instance-id> (publish-host-keys.sh writes them from the instances'
 * console output). An instance without one stops the program before any host is touched.
 *
 * Configuration: `pulumi config set --secret sshPrivateKey < ~/.ssh/web.pem`; with private
 * addresses from outside the VPC, a bastion: `bastionHost`, `bastionUser`, `bastionHostKey`.
 *
 * Until pulumi-backlog is published, the library is imported from this repository by path.
 */
import * as pulumi from "@pulumi/pulumi";
import { BacklogFleet, defineProfile } from "../../src";
import { ec2Hosts } from "../../src/aws";

const cfg = new pulumi.Config();

const profile = defineProfile({
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", pm: { maxChildren: 20 } }],
  listeners: [{ listen: 80, pool: "www" }],
});

export = async () => {
  const privateKey = cfg.requireSecret("sshPrivateKey");
  const bastionHost = cfg.get("bastionHost");
  const hosts = await ec2Hosts({
    tags: { [cfg.get("tagKey") ?? "Role"]: cfg.get("tagValue") ?? "web" },
    vpcId: cfg.get("vpcId") || undefined,
    addressKind: (cfg.get("addressKind") ?? "private") as "private" | "public",
    user: cfg.get("sshUser") ?? "admin",
    privateKey,
    hostKeys: { ssmParameterPrefix: cfg.get("hostKeyParameterPrefix") ?? "/pulumi-backlog/host-keys/" },
    ...(bastionHost
      ? {
          proxy: {
            host: bastionHost,
            user: cfg.get("bastionUser") ?? "admin",
            hostKey: cfg.require("bastionHostKey"),
            privateKey,
          },
        }
      : {}),
  });

  const fleet = new BacklogFleet("web", { profile, hosts });
  return {
    hosts: hosts.map((h) => ({ name: h.name, instanceId: h.instanceId, address: h.address })),
    verification: fleet.verification,
    inSync: fleet.inSync,
  };
};
