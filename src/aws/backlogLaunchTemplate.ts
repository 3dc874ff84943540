/**
 * BacklogLaunchTemplate: an EC2 launch template whose instances apply and verify a backlog profile
 * on their first boot (user data run by cloud-init).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import type { ConflictMode, ServiceNames } from "../core/converge";
import type { BacklogProfile, ProfileInput } from "../core/profile";
import type { HostPaths } from "../core/render";
import { resolveCarrier } from "../core/standalone";
import { backlogUserData, encodeUserData } from "../core/aws/userData";

/** Arguments of {@link BacklogLaunchTemplate}. */
export interface BacklogLaunchTemplateArgs {
  /**
   * The backlog profile: a `ProfileInput` (validated here, before anything is registered) or a
   * profile made with `defineProfile`.
   */
  profile: ProfileInput | BacklogProfile;
  /**
   * Your launch template arguments: AMI, instance type, network interfaces, IAM instance profile,
   * key pair, tag specifications, … Everything but `userData`, which this component sets (use
   * {@link precedingUserData} for user data of your own). Default: none (only user data).
   */
  launchTemplate?: Omit<aws.ec2.LaunchTemplateArgs, "userData">;
  /**
   * Your own user data, run before the backlog script: a `#cloud-config` document or a `#!` script,
   * e.g. one that installs php-fpm and nginx. Combined with the script as MIME multipart, yours
   * first; cloud-config `runcmd` runs after the script, `packages:` before it. Default: none.
   */
  precedingUserData?: string;
  /** File locations on the instances. Default: Debian 12 (`/etc/sysctl.d`, `/etc/php/8.2/fpm/pool.d`, `/etc/nginx/conf.d`). */
  paths?: Partial<HostPaths>;
  /** Unit and binary names of php-fpm and nginx. Default: Debian 12 (`php8.2-fpm`, `php-fpm8.2`, `nginx`). */
  services?: Partial<ServiceNames>;
  /**
   * State directory name on the instances (`/var/lib/pulumi-backlog/<stateName>`). Default
   * `"standalone"`, the same as {@link BacklogSsmAssociation}'s, so that an association repairing
   * the same instances later knows their values from before the first boot.
   */
  stateName?: string;
  /**
   * gzip the user data: `"auto"` (default: only when the text is over EC2's 16 KB limit, which a
   * profile with a pool and a listener already is), `true` or `false`. cloud-init inflates it.
   */
  compress?: boolean | "auto";
  /**
   * Sysctl conflicts (another sysctl file that sets a managed key after the drop-in, so a boot
   * undoes it; docs/sysctl.md): `"report"` prints them and their verification rows,
   * `"neutralize"` also comments them out (transactional, original kept), `"none"` leaves the check
   * out of the script. Default `"none"`: the check costs about 3 KB of the 16 KB EC2 takes after
   * gzip, and a profile with pools and listeners then no longer fits (the construction fails,
   * naming the sizes). Pair with a `BacklogSsmAssociation` (default `"report"`) for the check.
   */
  conflicts?: ConflictMode | "none";
}

/**
 * An `aws.ec2.LaunchTemplate` (child `<name>`) whose user data applies the backlog profile on each
 * new instance and verifies it: `/proc/sys` and each listening socket's effective backlog (`ss`)
 * against the profile. The instance's console log and `/var/log/cloud-init-output.log` end with a
 * table and `pulumi-backlog: OK …` or `pulumi-backlog: MISMATCH …`; a mismatch or a failed step
 * makes cloud-init report an error (`cloud-init status` → `error`, module `scripts-user`).
 *
 * User data runs once per instance: a changed profile reaches new instances (a new template
 * version), not running ones; pair it with a `BacklogSsmAssociation` for those.
 */
export class BacklogLaunchTemplate extends pulumi.ComponentResource {
  /** The launch template. */
  public readonly launchTemplate: aws.ec2.LaunchTemplate;
  /** Its id. */
  public readonly id: pulumi.Output<string>;
  /** Its latest version (a new one each time the profile or your arguments change). */
  public readonly latestVersion: pulumi.Output<number>;
  /** The user data as text (the script, or the MIME archive), before encoding. */
  public readonly userDataText: string;
  /** Size of the user data EC2 stores, in bytes (limit 16384). */
  public readonly userDataBytes: number;
  /** Whether the user data is gzip-compressed. */
  public readonly userDataCompressed: boolean;

  constructor(name: string, args: BacklogLaunchTemplateArgs, opts?: pulumi.ComponentResourceOptions) {
    const { profile, options, recorded } = resolveCarrier(args, "none");
    if (args.launchTemplate && (args.launchTemplate as aws.ec2.LaunchTemplateArgs).userData !== undefined) {
      throw new Error(`${name}: launchTemplate.userData is set by BacklogLaunchTemplate; pass your own user data as precedingUserData`);
    }
    const text = backlogUserData(profile, { ...options, precedingUserData: args.precedingUserData });
    const encoded = encodeUserData(text, args.compress ?? "auto");
    super(
      "backlog:index:BacklogLaunchTemplate",
      name,
      {
        ...recorded,
        precedingUserData: args.precedingUserData !== undefined,
        userDataBytes: encoded.bytes,
        userDataCompressed: encoded.compressed,
        userDataSha256: createHash("sha256").update(text).digest("hex"),
      },
      opts,
    );
    this.userDataText = text;
    this.userDataBytes = encoded.bytes;
    this.userDataCompressed = encoded.compressed;
    this.launchTemplate = new aws.ec2.LaunchTemplate(
      name,
      {
        ...(args.launchTemplate ?? {}),
        userData: encoded.base64,
      },
      { parent: this },
    );
    this.id = this.launchTemplate.id;
    this.latestVersion = this.launchTemplate.latestVersion;
    // The recorded profile and paths again as outputs: stack policies see outputs only.
    this.registerOutputs({ profile, paths: recorded.paths, id: this.id, latestVersion: this.latestVersion, userDataBytes: this.userDataBytes });
  }
}
