/**
 * The public API's names: what the entry points `pulumi-backlog` (src/index.ts) and
 * `pulumi-backlog/aws` (src/aws/index.ts) export, values and types, pinned here. Adding or removing
 * a public name must be deliberate: change the list below and say so in CHANGELOG.md (the public
 * API is what these two entry points export; docs/library.md, "Versioning").
 *
 * The names come from the TypeScript compiler (so type-only exports count too); the values are
 * also checked against what the compiled entry points really export at run time.
 */
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import * as ts from "typescript";
import * as main from "../../src";
import * as aws from "../../src/aws";

jest.setTimeout(120_000);

const repo = join(__dirname, "..", "..");

/** Pinned public API of `pulumi-backlog`. */
const MAIN = {
  values: [
    "BacklogFleet",
    "BacklogHost",
    "DEBIAN_12_PATHS",
    "DEBIAN_12_SERVICES",
    "DEFAULTS",
    "DEFAULT_MAX_PARALLEL",
    "INPUT_RULES",
    "MACHINE_GLOBAL_SYSCTLS",
    "NETDEV_MAX_BACKLOG",
    "ProfileError",
    "RolloutError",
    "SOMAXCONN",
    "STANDALONE_EXIT",
    "SYSCTL_DROPIN_PATH",
    "TCP_MAX_SYN_BACKLOG",
    "appBacklogs",
    "checkProfile",
    "compare",
    "debianPaths",
    "defineProfile",
    "expectedValues",
    "formatMismatchTable",
    "isVerifyParseError",
    "kernelBacklog",
    "kernelTargets",
    "parseHostKey",
    "parseSs",
    "parseSysctlOutput",
    "phpFpmDefaultBacklog",
    "phpFpmListenArg",
    "phpVersionOfUnit",
    "quote",
    "render",
    "rules",
    "socketMatches",
    "sshTarget",
    "standaloneScript",
    "validateProfile",
  ],
  types: [
    "AppBacklog",
    "BacklogFleetArgs",
    "BacklogHostArgs",
    "BacklogProfile",
    "ComparisonRow",
    "ConflictMode",
    "EffectiveValues",
    "ExpectedValue",
    "ExtraDirective",
    "FleetHost",
    "HostChanges",
    "HostComparison",
    "HostKey",
    "HostPaths",
    "HostPresence",
    "HostRollout",
    "KernelTarget",
    "KernelValues",
    "Listener",
    "ListenerInput",
    "ListeningSocket",
    "MaxParallel",
    "Mode",
    "NetdevMaxBacklogInput",
    "PhpVersion",
    "Pm",
    "PmInput",
    "PmStyle",
    "Pool",
    "PoolInput",
    "PoolListen",
    "Problem",
    "ProfileInput",
    "RenderOptions",
    "RenderedFile",
    "RolloutInput",
    "Rule",
    "ServiceAction",
    "ServiceNames",
    "SocketSelector",
    "SshConnection",
    "SshConnectionArgs",
    "SshProxyArgs",
    "StandaloneOptions",
    "SysctlConflict",
    "SysctlConflictRow",
    "SysctlKey",
    "SysctlTool",
    "Sysctls",
    "ValueSource",
    "VerificationRow",
    "VerifyParseError",
  ],
};

/** Pinned public API of `pulumi-backlog/aws`. */
const AWS = {
  values: [
    "BacklogLaunchTemplate",
    "BacklogSsmAssociation",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_ERRORS",
    "DEFAULT_SCHEDULE",
    "EC2_STATES",
    "EC2_USER_DATA_LIMIT",
    "HOST_KEY_PARAMETER_PREFIX",
    "SSM_DOCUMENT_LIMIT",
    "backlogUserData",
    "ec2Hosts",
    "ec2Presence",
    "encodeUserData",
    "hostKeysFromConsoleOutput",
    "instanceUserData",
    "ssmDocumentContent",
  ],
  types: [
    "BacklogLaunchTemplateArgs",
    "BacklogSsmAssociationArgs",
    "BacklogUserDataOptions",
    "Ec2Host",
    "Ec2HostsArgs",
    "Ec2Instance",
    "EncodedUserData",
    "HostKeySource",
    "InstanceUserDataOptions",
    "SsmDocumentOptions",
    "SsmOutputLocation",
  ],
};

const entries = { main: join(repo, "src", "index.ts"), aws: join(repo, "src", "aws", "index.ts") };

/** Exported names of each entry point as the compiler sees them: values (incl. classes) and type-only names. */
function compilerExports(): Record<keyof typeof entries, { values: string[]; types: string[] }> {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(repo, "tsconfig.build.json"),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  );
  if (!config) throw new Error("tsconfig.build.json could not be read");
  const program = ts.createProgram(Object.values(entries), { ...config.options, noEmit: true });
  const checker = program.getTypeChecker();
  const out = {} as Record<keyof typeof entries, { values: string[]; types: string[] }>;
  for (const [name, file] of Object.entries(entries) as [keyof typeof entries, string][]) {
    const source = program.getSourceFile(file);
    const moduleSymbol = source && checker.getSymbolAtLocation(source);
    if (!moduleSymbol) throw new Error(`${relative(repo, file)}: not a module`);
    const values: string[] = [];
    const types: string[] = [];
    for (const s of checker.getExportsOfModule(moduleSymbol)) {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      (target.flags & ts.SymbolFlags.Value ? values : types).push(s.name);
    }
    out[name] = { values: values.sort(), types: types.sort() };
  }
  return out;
}

let found: ReturnType<typeof compilerExports>;

beforeAll(() => {
  found = compilerExports();
});

test("pulumi-backlog exports exactly the pinned names (a change here is an API change: CHANGELOG.md)", () => {
  expect(found.main.values).toEqual([...MAIN.values].sort());
  expect(found.main.types).toEqual([...MAIN.types].sort());
});

test("pulumi-backlog/aws exports exactly the pinned names (a change here is an API change: CHANGELOG.md)", () => {
  expect(found.aws.values).toEqual([...AWS.values].sort());
  expect(found.aws.types).toEqual([...AWS.types].sort());
});

test("at run time the entry points export exactly the pinned values (type-only names leave no trace)", () => {
  expect(Object.keys(main).sort()).toEqual([...MAIN.values].sort());
  expect(Object.keys(aws).sort()).toEqual([...AWS.values].sort());
});

test("the entry points name every export explicitly: no `export *`", () => {
  for (const file of Object.values(entries)) {
    expect(`${relative(repo, file)}: ${readFileSync(file, "utf8")}`).not.toMatch(/^\s*export\s*\*/m);
  }
});
