/**
 * AWS paths of pulumi-backlog: EC2 instances found by tag as SSH hosts ({@link ec2Hosts}), user data
 * for instances not yet launched ({@link BacklogLaunchTemplate}, {@link instanceUserData}), and
 * fleets without SSH ({@link BacklogSsmAssociation}). The last two carry the standalone script of
 * `../standalone.ts`: one way to apply and verify, whatever carries it.
 *
 * Every public name is listed here explicitly (no `export *`); `test/unit/exports.test.ts` pins
 * the list.
 */

// EC2 instances by tag as SSH hosts of a fleet.
export { EC2_STATES, HOST_KEY_PARAMETER_PREFIX, ec2Hosts, ec2Presence, hostKeysFromConsoleOutput } from "./ec2Hosts";
export type { Ec2Host, Ec2HostsArgs, Ec2Instance, HostKeySource } from "./ec2Hosts";

// Instances not yet launched: launch-template user data.
export { BacklogLaunchTemplate } from "./backlogLaunchTemplate";
export type { BacklogLaunchTemplateArgs } from "./backlogLaunchTemplate";
export { EC2_USER_DATA_LIMIT, backlogUserData, encodeUserData, instanceUserData } from "../core/aws/userData";
export type { BacklogUserDataOptions, EncodedUserData, InstanceUserDataOptions } from "../core/aws/userData";

// Fleets without SSH: an SSM document and its State Manager association.
export { BacklogSsmAssociation, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_ERRORS, DEFAULT_SCHEDULE } from "./backlogSsmAssociation";
export type { BacklogSsmAssociationArgs, SsmOutputLocation } from "./backlogSsmAssociation";
export { SSM_DOCUMENT_LIMIT, ssmDocumentContent } from "../core/aws/ssmDocument";
export type { SsmDocumentOptions } from "../core/aws/ssmDocument";
