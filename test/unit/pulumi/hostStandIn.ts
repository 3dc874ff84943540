/**
 * A stand-in for BacklogHost in fleet unit tests (`jest.mock` of src/pulumi/backlogHost): a
 * component with one custom child `<name>-settings`, whose planned `actions` come from `actions()`
 * and whose `probeFailure` from `probeFailures()` (per host component name), read when each host
 * is constructed. The child's inputs record the host's `rolloutPlace`.
 */
import type * as pulumi from "@pulumi/pulumi";

export function backlogHostStandIn(
  actions: () => Record<string, Record<string, string>>,
  probeFailures: () => Record<string, string> = () => ({}),
): { BacklogHost: unknown; FLEET_HOST_ARGS: WeakSet<object> } {
  const p = jest.requireActual("@pulumi/pulumi") as typeof pulumi;
  class Settings extends p.CustomResource {
    declare readonly verification: pulumi.Output<unknown[]>;
    constructor(name: string, rolloutPlace: unknown, opts: pulumi.CustomResourceOptions) {
      super("test:index:HostSettings", name, { verification: undefined, rolloutPlace }, opts);
    }
  }
  class BacklogHost extends p.ComponentResource {
    verification: pulumi.Output<unknown[]>;
    inSync: pulumi.Output<boolean>;
    actions: pulumi.Output<Record<string, string>>;
    probeFailure: pulumi.Output<string | undefined>;
    constructor(name: string, args: { rolloutPlace?: unknown }, opts?: pulumi.ComponentResourceOptions) {
      super("backlog:index:BacklogHost", name, {}, opts);
      this.verification = new Settings(`${name}-settings`, args.rolloutPlace, { parent: this }).verification;
      this.inSync = p.output(true);
      this.actions = p.output(actions()[name] ?? {});
      this.probeFailure = p.output(probeFailures()[name]);
      this.registerOutputs({});
    }
  }
  return { BacklogHost, FLEET_HOST_ARGS: new WeakSet<object>() };
}
