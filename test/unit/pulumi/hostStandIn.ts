/**
 * A stand-in for BacklogHost in fleet unit tests (`jest.mock` of src/pulumi/backlogHost): a
 * component with one custom child `<name>-settings`, whose planned `actions` come from `actions()`
 * (per host component name), read when each host is constructed.
 */
import type * as pulumi from "@pulumi/pulumi";

export function backlogHostStandIn(actions: () => Record<string, Record<string, string>>): { BacklogHost: unknown } {
  const p = jest.requireActual("@pulumi/pulumi") as typeof pulumi;
  class Settings extends p.CustomResource {
    declare readonly verification: pulumi.Output<unknown[]>;
    constructor(name: string, opts: pulumi.CustomResourceOptions) {
      super("test:index:HostSettings", name, { verification: undefined }, opts);
    }
  }
  class BacklogHost extends p.ComponentResource {
    verification: pulumi.Output<unknown[]>;
    inSync: pulumi.Output<boolean>;
    actions: pulumi.Output<Record<string, string>>;
    constructor(name: string, _args: unknown, opts?: pulumi.ComponentResourceOptions) {
      super("backlog:index:BacklogHost", name, {}, opts);
      this.verification = new Settings(`${name}-settings`, { parent: this }).verification;
      this.inSync = p.output(true);
      this.actions = p.output(actions()[name] ?? {});
      this.registerOutputs({});
    }
  }
  return { BacklogHost };
}
