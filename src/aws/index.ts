/**
 * AWS paths of pulumi-backlog: EC2 instances found by tag as SSH hosts ({@link ec2Hosts}), user data
 * for instances not yet launched ({@link BacklogLaunchTemplate}, {@link instanceUserData}), and
 * fleets without SSH ({@link BacklogSsmAssociation}). The last two carry the standalone script of
 * `../standalone.ts`: one way to apply and verify, whatever carries it.
 */
export * from "./backlogLaunchTemplate";
export * from "./backlogSsmAssociation";
export * from "./ec2Hosts";
export * from "../core/aws/ssmDocument";
export * from "../core/aws/userData";
