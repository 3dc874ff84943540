/**
 * The pulumi-backlog policy pack. Pulumi loads this file (package.json "main") with ts-node, which
 * type-checks it: the `Policies` annotation below is where the policies' own structural types
 * (types.ts) are checked against @pulumi/policy's.
 *
 *   cd policy && npm ci && cd .. && npm run pulumi -- preview --policy-pack policy
 *
 * The policies and their configuration are in policies.ts and the README ("Policy pack").
 */
import { type Policies, PolicyPack } from "@pulumi/policy";
import { PACK_NAME, createPolicies } from "./policies";

const policies: Policies = createPolicies();

new PolicyPack(PACK_NAME, {
  description:
    "pulumi-backlog: the library's own backlog rules on every backlog component, per host and across components; " +
    "minimum queue lengths; pinned SSH host keys; a sysctl drop-in that wins the boot-time load order.",
  policies,
});
