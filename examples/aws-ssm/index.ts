/**
 * Fleets without SSH: every running EC2 instance tagged Role=web (configurable) gets the backlog
 * profile from an SSM State Manager association, at once and then every 30 minutes, so drift is
 * repaired. Each run prints a verification table; a mismatch fails the run (exit 20).
 *
 * The instances need the SSM agent (Amazon Linux, Ubuntu and recent Debian AMIs have it, or install
 * it) and an instance profile with the AmazonSSMManagedInstanceCore policy; this program creates
 * one you can attach (output `instanceProfileName`).
 *
 * Until pulumi-backlog is published, the library is imported from this repository by path.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { defineProfile } from "../../src";
import { BacklogSsmAssociation } from "../../src/aws";

const cfg = new pulumi.Config();

// One profile for the whole fleet: the backlog every php-fpm pool and nginx listener gets;
// net.core.somaxconn and net.ipv4.tcp_max_syn_backlog follow from it.
const profile = defineProfile({
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", pm: { maxChildren: 20 } }],
  listeners: [{ listen: 80, pool: "www" }],
});

const bucket = cfg.get("outputBucket") ?? "";

const fleet = new BacklogSsmAssociation("web", {
  profile,
  targetTags: { [cfg.get("targetTagKey") ?? "Role"]: cfg.get("targetTagValue") ?? "web" },
  // Defaults, spelled out: a tenth of the fleet at a time, stop at the first failure, every 30 minutes.
  maxConcurrency: "10%",
  maxErrors: "0",
  scheduleExpression: "rate(30 minutes)",
  ...(bucket ? { outputLocation: { s3BucketName: bucket, s3KeyPrefix: "pulumi-backlog/" } } : {}),
  tags: { "managed-by": "pulumi-backlog" },
});

// An instance role the SSM agent can work with (attach the instance profile to your instances).
const role = new aws.iam.Role("backlog-ssm-instance", {
  assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ec2.amazonaws.com" }),
});
new aws.iam.RolePolicyAttachment("backlog-ssm-core", {
  role: role.name,
  policyArn: "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
});
if (bucket) {
  new aws.iam.RolePolicy("backlog-ssm-output", {
    role: role.id,
    policy: JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: ["s3:PutObject"], Resource: `arn:aws:s3:::${bucket}/pulumi-backlog/*` }],
    }),
  });
}
const instanceProfile = new aws.iam.InstanceProfile("backlog-ssm-instance", { role: role.name });

export const documentName = fleet.documentName;
export const associationId = fleet.associationId;
export const instanceProfileName = instanceProfile.name;
