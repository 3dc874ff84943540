/**
 * BacklogSsmAssociation: a fleet without SSH keeps a backlog profile through AWS Systems Manager.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { ConflictMode, ServiceNames } from "../core/converge";
import type { BacklogProfile, ProfileInput } from "../core/profile";
import type { HostPaths } from "../core/render";
import { resolveCarrier } from "../core/standalone";
import { ssmDocumentContent } from "../core/aws/ssmDocument";

/** Default {@link BacklogSsmAssociationArgs.maxConcurrency}. */
export const DEFAULT_MAX_CONCURRENCY = "10%";
/** Default {@link BacklogSsmAssociationArgs.maxErrors}. */
export const DEFAULT_MAX_ERRORS = "0";
/** Default {@link BacklogSsmAssociationArgs.scheduleExpression}: State Manager's shortest rate. */
export const DEFAULT_SCHEDULE = "rate(30 minutes)";

/** Where the SSM agent uploads each run's full output (the console shows only the first 2,500 characters). */
export interface SsmOutputLocation {
  /** S3 bucket name. The instances' IAM role needs `s3:PutObject` on it. */
  s3BucketName: pulumi.Input<string>;
  /** Key prefix. Default: none (the bucket's root). */
  s3KeyPrefix?: pulumi.Input<string>;
  /** The bucket's region. Default: the association's. */
  s3Region?: pulumi.Input<string>;
}

/** Arguments of {@link BacklogSsmAssociation}. */
export interface BacklogSsmAssociationArgs {
  /**
   * The backlog profile: a `ProfileInput` (validated here, before anything is registered) or a
   * profile made with `defineProfile`.
   */
  profile: ProfileInput | BacklogProfile;
  /**
   * The instances to keep: tag key → value. Each pair becomes one association target
   * `{ key: "tag:<Key>", values: [<value>] }` (State Manager takes one value per tag key and at
   * most 5 targets). Required, 1 to 5 tags. The instances must run the SSM agent with an instance
   * profile that allows it (e.g. the `AmazonSSMManagedInstanceCore` policy).
   */
  targetTags: Record<string, string>;
  /**
   * How many instances run the script at once: a number (`"5"`) or a percentage of the targets
   * (`"10%"`). Default `"10%"`: each run restarts php-fpm or nginx only where a socket must listen
   * again, but a restart drops requests in flight, so a fleet is changed a tenth at a time.
   */
  maxConcurrency?: string;
  /**
   * How many failed instances stop the run on the remaining ones: a number or a percentage.
   * Default `"0"`: the first failure (a configuration test, a restart, a verification mismatch)
   * stops the rollout, so a bad profile reaches at most `maxConcurrency` instances. The price: an
   * instance that always fails holds back drift repair on the ones the run has not reached yet;
   * raise it (e.g. `"1"` or `"5%"`) for large fleets once the profile is known to be good.
   */
  maxErrors?: string;
  /**
   * When the association runs again (it also runs once when created or changed), so that drift
   * (a value changed by hand, a service restarted with other settings) is repaired: `rate(N
   * minutes|hours|days)` with at least 30 minutes, or `cron(…)`. Default `"rate(30 minutes)"`.
   */
  scheduleExpression?: string;
  /** Upload each run's output to S3. Default: none (the last 2,500 characters stay visible in the console). */
  outputLocation?: SsmOutputLocation;
  /** Seconds a run may take on one instance before the agent stops it. Default 600. */
  timeoutSeconds?: number;
  /** Association compliance severity: `UNSPECIFIED`, `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`. Default: AWS's (`UNSPECIFIED`). */
  complianceSeverity?: "UNSPECIFIED" | "LOW" | "MEDIUM" | "HIGH" | "CRITICAL";
  /** Tags on the document and the association. Default: none. */
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** File locations on the instances. Default: Debian 12. */
  paths?: Partial<HostPaths>;
  /** Unit and binary names of php-fpm and nginx. Default: Debian 12 (`php8.2-fpm`, `php-fpm8.2`, `nginx`). */
  services?: Partial<ServiceNames>;
  /** State directory name on the instances. Default `"standalone"`, shared with `BacklogLaunchTemplate`. */
  stateName?: string;
  /**
   * Sysctl conflicts (another sysctl file that sets a managed key after the drop-in, so a boot or
   * `sysctl --system` undoes it; docs/sysctl.md): `"report"` (default) prints each and shows the
   * values after boot as advisory verification rows; `"neutralize"` also comments the line out
   * inside the run's transaction (original kept; a later run in `"report"` gives it back) and
   * those rows must hold; `"none"` leaves the check out of the document.
   */
  conflicts?: ConflictMode | "none";
}

const CONCURRENCY = /^([1-9][0-9]*|[1-9][0-9]?%|100%)$/;
const ERRORS = /^([0-9]|[1-9][0-9]+|[0-9]%|[1-9][0-9]%|100%)$/;

/** Checks the association arguments AWS would reject only at deploy time. */
function checkArgs(name: string, args: BacklogSsmAssociationArgs): void {
  const problems: string[] = [];
  const tags = Object.entries(args.targetTags ?? {});
  if (tags.length < 1 || tags.length > 5) problems.push(`targetTags: give 1 to 5 tags (State Manager takes at most 5 targets), got ${tags.length}`);
  for (const [k, v] of tags) {
    if (!/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u.test(k) || k.startsWith("aws:"))
      problems.push(`targetTags: key ${JSON.stringify(k)} is not a tag key EC2 allows`);
    if (typeof v !== "string" || !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u.test(v))
      problems.push(`targetTags[${JSON.stringify(k)}]: ${JSON.stringify(v)} is not a tag value EC2 allows`);
  }
  const concurrency = args.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
  if (!CONCURRENCY.test(concurrency)) problems.push(`maxConcurrency ${JSON.stringify(concurrency)}: a number from 1, or a percentage from 1% to 100%`);
  const errors = args.maxErrors ?? DEFAULT_MAX_ERRORS;
  if (!ERRORS.test(errors)) problems.push(`maxErrors ${JSON.stringify(errors)}: a number from 0, or a percentage from 0% to 100%`);
  const schedule = args.scheduleExpression ?? DEFAULT_SCHEDULE;
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(schedule);
  if (rate) {
    if (rate[2]?.startsWith("minute") && Number(rate[1]) < 30)
      problems.push(`scheduleExpression ${JSON.stringify(schedule)}: State Manager runs associations at most every 30 minutes`);
  } else if (!/^cron\(.+\)$/.test(schedule)) {
    problems.push(`scheduleExpression ${JSON.stringify(schedule)}: use rate(N minutes|hours|days) or cron(...)`);
  }
  if (problems.length > 0) throw new Error(`${name}: ${problems.join("; ")}`);
}

/**
 * Keeps a backlog profile on every instance with the given tags, without SSH: an SSM Command
 * document (`aws:runShellScript`, schema 2.2) carrying the same script as the user data of
 * `BacklogLaunchTemplate`, and a State Manager association that runs it on the tagged instances
 * when created or changed and then on a schedule, so drift is repaired. Each run applies the
 * profile (files, configuration tests, `sysctl -p`, restarts only where a socket must listen
 * again), then verifies `/proc/sys` and every listening socket's effective backlog; a mismatch
 * exits 20 and shows as a failed association run, with the table in the command output.
 *
 * Children: `aws.ssm.Document` `<name>` and `aws.ssm.Association` `<name>`.
 */
export class BacklogSsmAssociation extends pulumi.ComponentResource {
  /** The Command document. */
  public readonly document: aws.ssm.Document;
  /** The State Manager association. */
  public readonly association: aws.ssm.Association;
  /** The document's name. */
  public readonly documentName: pulumi.Output<string>;
  /** The association's id. */
  public readonly associationId: pulumi.Output<string>;

  constructor(name: string, args: BacklogSsmAssociationArgs, opts?: pulumi.ComponentResourceOptions) {
    const { profile, options, recorded } = resolveCarrier(args, "report");
    checkArgs(name, args);
    const content = ssmDocumentContent(profile, { ...options, timeoutSeconds: args.timeoutSeconds });
    const maxConcurrency = args.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    const maxErrors = args.maxErrors ?? DEFAULT_MAX_ERRORS;
    const scheduleExpression = args.scheduleExpression ?? DEFAULT_SCHEDULE;
    super("backlog:index:BacklogSsmAssociation", name, { ...recorded, targetTags: args.targetTags, maxConcurrency, maxErrors, scheduleExpression }, opts);

    this.document = new aws.ssm.Document(
      name,
      {
        documentType: "Command",
        documentFormat: "JSON",
        targetType: "/AWS::EC2::Instance",
        content,
        tags: args.tags,
      },
      { parent: this },
    );
    this.association = new aws.ssm.Association(
      name,
      {
        name: this.document.name,
        // A new document version updates the association, and an updated association runs at once.
        documentVersion: this.document.latestVersion,
        targets: Object.entries(args.targetTags).map(([key, value]) => ({ key: `tag:${key}`, values: [value] })),
        maxConcurrency,
        maxErrors,
        scheduleExpression,
        outputLocation: args.outputLocation,
        complianceSeverity: args.complianceSeverity,
        tags: args.tags,
      },
      { parent: this },
    );
    this.documentName = this.document.name;
    this.associationId = this.association.associationId;
    // The recorded profile and paths again as outputs: stack policies see outputs only.
    this.registerOutputs({ profile, paths: recorded.paths, documentName: this.documentName, associationId: this.associationId });
  }
}
