/**
 * Instances not yet launched: a launch template whose user data installs php-fpm and nginx (your
 * cloud-config), then applies the backlog profile and verifies it at first boot. The console log
 * and /var/log/cloud-init-output.log end with the verification table and `pulumi-backlog: OK`;
 * a mismatch makes `cloud-init status` report an error.
 *
 * Launch instances from it with an Auto Scaling group, the console, or (launchInstance: true) the
 * one aws.ec2.Instance below. A second instance shows the helper for aws.ec2.Instance's own user data.
 *
 * Until pulumi-backlog is published, the library is imported from this repository by path.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { defineProfile } from "../../src";
import { BacklogLaunchTemplate, instanceUserData } from "../../src/aws";

const cfg = new pulumi.Config();

const profile = defineProfile({
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock", pm: { maxChildren: 20 } }],
  listeners: [{ listen: 80, pool: "www" }],
});

// Runs before the backlog script: cloud-init installs packages before it runs user-data scripts.
const installPackages = "#cloud-config\npackages:\n  - php8.2-fpm\n  - nginx-light\n";

// The latest official Debian 12 image (account 136693071363 is Debian's), unless imageId is set.
const imageId =
  cfg.get("imageId") ||
  aws.ec2.getAmiOutput({
    owners: ["136693071363"],
    mostRecent: true,
    filters: [
      { name: "name", values: ["debian-12-amd64-*"] },
      { name: "architecture", values: ["x86_64"] },
    ],
  }).id;
const instanceType = cfg.get("instanceType") ?? "t3.small";

const template = new BacklogLaunchTemplate("web", {
  profile,
  precedingUserData: installPackages,
  launchTemplate: {
    imageId,
    instanceType,
    metadataOptions: { httpTokens: "required" },
    // Tag the instances so that a BacklogSsmAssociation (examples/aws-ssm) keeps them later.
    tagSpecifications: [{ resourceType: "instance", tags: { Role: "web", "backlog-profile": profile.name } }],
  },
});

let instanceId: pulumi.Output<string> | undefined;
if (cfg.getBoolean("launchInstance")) {
  const fromTemplate = new aws.ec2.Instance("web-1", {
    launchTemplate: { id: template.id, version: template.latestVersion.apply(String) },
  });
  // Without a template: the same user data straight on an instance.
  const direct = new aws.ec2.Instance("web-2", {
    ami: imageId,
    instanceType,
    ...instanceUserData(profile, { precedingUserData: installPackages }),
    tags: { Role: "web", "backlog-profile": profile.name },
  });
  instanceId = pulumi.interpolate`${fromTemplate.id},${direct.id}`;
}

export const launchTemplateId = template.id;
export const launchTemplateVersion = template.latestVersion;
export const userDataBytes = template.userDataBytes;
export const userDataCompressed = template.userDataCompressed;
export const instances = instanceId;
