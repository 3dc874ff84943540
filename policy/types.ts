/**
 * The part of `@pulumi/policy`'s API the policies use, declared structurally so that the policies
 * (and their unit tests) need no `@pulumi/policy` at run time. `index.ts` hands them to the real
 * `PolicyPack` typed as `@pulumi/policy`'s `Policies`, so the compiler checks that these shapes
 * still fit whenever the pack is loaded (Pulumi type-checks it with ts-node) or `npm run typecheck`
 * runs in `policy/`.
 *
 * @packageDocumentation
 */

/** `advisory` reports, `mandatory` fails the preview or update, `disabled` skips the policy. */
export type EnforcementLevel = "advisory" | "mandatory" | "remediate" | "disabled";

/** How bad a violation is, shown with it. */
export type Severity = "low" | "medium" | "high" | "critical";

/** The subset of JSON Schema used in the policies' config schemas. */
export interface ConfigProperty {
  type: "integer" | "string";
  description: string;
  default: number | string;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

/** A policy's configuration schema (JSON Schema `properties`). `enforcementLevel` is implicit. */
export interface ConfigSchema {
  properties: Record<string, ConfigProperty>;
}

/** Reports one violation; `urn` attributes a stack policy's violation to one resource. */
export type ReportViolation = (message: string, urn?: string) => void;

/**
 * What a resource policy gets: the resource's **inputs** as `props`. For a component these are
 * the args it passed to `super()`, which the components of this library reduce to a validated
 * `profile`, `paths`, `services` and the `connection` target (no key material).
 */
export interface ResourceArgs {
  type: string;
  name: string;
  urn: string;
  props: Record<string, any>;
  getConfig<T extends object>(): T;
  notApplicable(reason?: string): never;
}

/** One resource as a stack policy sees it: `props` are its **outputs**. */
export interface StackResource {
  type: string;
  name: string;
  urn: string;
  props: Record<string, any>;
  parent?: StackResource;
}

/** What a stack policy gets: every resource of the stack, after the deployment (or preview). */
export interface StackArgs {
  resources: StackResource[];
  getConfig<T extends object>(): T;
  notApplicable(reason?: string): never;
}

interface PolicyBase {
  name: string;
  description: string;
  enforcementLevel: EnforcementLevel;
  severity: Severity;
  remediationSteps: string;
  configSchema?: ConfigSchema;
  tags?: string[];
}

/** A policy run on each resource as it is registered. */
export interface ResourcePolicy extends PolicyBase {
  validateResource: (args: ResourceArgs, report: ReportViolation) => void;
}

/** A policy run once over the whole stack at the end of a preview or update. */
export interface StackPolicy extends PolicyBase {
  validateStack: (args: StackArgs, report: ReportViolation) => void;
}

/** Either kind. */
export type BacklogPolicy = ResourcePolicy | StackPolicy;
