/**
 * BacklogFleet: many hosts that share one backlog profile.
 */
import * as pulumi from "@pulumi/pulumi";
import { BacklogHost, BacklogHostArgs, SshConnectionArgs, VerificationRow } from "./backlogHost";
import { BacklogProfile, toProfile } from "./profile";

/** One host of a fleet. */
export interface FleetHost {
    /** Name of the host: names its child resources and its entry in the outputs. Unique in the fleet. */
    name: string;
    /** How to reach it (see {@link BacklogHostArgs.connection}). */
    connection: pulumi.Input<SshConnectionArgs>;
}

/** Arguments of {@link BacklogFleet}: those of {@link BacklogHostArgs} except `connection`, plus the hosts. */
export interface BacklogFleetArgs extends Omit<BacklogHostArgs, "connection"> {
    /** The hosts. Each becomes a {@link BacklogHost} child named `<fleet>-<host>`. */
    hosts: FleetHost[];
}

/** Validates the profile and the host list before anything is registered. */
function fleetProfile(args: BacklogFleetArgs): BacklogProfile {
    const profile = toProfile(args.profile);
    const seen = new Set<string>();
    for (const [i, h] of args.hosts.entries()) {
        if (typeof h.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(h.name)) {
            throw new Error(`hosts[${i}].name ${JSON.stringify(h.name)}: must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
        }
        if (seen.has(h.name)) {
            throw new Error(`hosts[${i}].name ${JSON.stringify(h.name)}: duplicate host name; each host needs its own name`);
        }
        seen.add(h.name);
    }
    return profile;
}

/**
 * Applies one backlog profile to many hosts (each a {@link BacklogHost}), in parallel. The profile is
 * validated once, before any host is touched. A host that fails (unreachable, failed config test,
 * verification mismatch) fails the deployment with its name; the others still converge.
 */
export class BacklogFleet extends pulumi.ComponentResource {
    /** The host components, by host name. */
    public readonly hosts: Record<string, BacklogHost>;
    /** Verification rows by host name. */
    public readonly verification: pulumi.Output<Record<string, VerificationRow[]>>;
    /** Whether each host matched the profile when this program probed it. */
    public readonly inSync: pulumi.Output<Record<string, boolean>>;

    /**
     * @param name - Logical name; each host's component is named `<name>-<host name>`.
     * @param args - The hosts, the profile they share and, optionally, paths and service names.
     * @param opts - Component resource options (parent, providers, aliases, …).
     * @throws {@link ProfileError} when the profile breaks a rule, and `Error` for an invalid or
     *   duplicate host name: both before any host is touched.
     */
    constructor(name: string, args: BacklogFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        const profile = fleetProfile(args);
        super("backlog:index:BacklogFleet", name, { profile, hosts: args.hosts.map((h) => h.name) }, opts);
        this.hosts = {};
        for (const h of args.hosts) {
            this.hosts[h.name] = new BacklogHost(`${name}-${h.name}`, {
                connection: h.connection,
                profile,
                paths: args.paths,
                services: args.services,
            }, { parent: this });
        }
        const byHost = <T>(pick: (host: BacklogHost) => pulumi.Output<T>): pulumi.Output<Record<string, T>> =>
            pulumi.all(Object.fromEntries(Object.entries(this.hosts).map(([n, host]) => [n, pick(host)]))) as pulumi.Output<Record<string, T>>;
        this.verification = byHost((host) => host.verification);
        this.inSync = byHost((host) => host.inSync);
        this.registerOutputs({ profile, verification: this.verification, inSync: this.inSync });
    }
}
