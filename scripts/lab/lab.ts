/**
 * Disposable Debian lab hosts for the integration tests: `npm run lab -- <command>`.
 * See scripts/lab/README.md for what a host is and the inventory format.
 */
import { parseArgs } from "node:util";
import { down, exec, labDir, restart, status, up } from "./hosts.ts";
import { DEFAULT_SUITE, RELEASES, ensureHostPackages, ensureRootfses, release } from "./rootfs.ts";

const USAGE = `usage: npm run lab -- <command>

  up [--hosts N] [--suite SUITE | --suites SUITE,SUITE,...] [--prefix NAME] [--timeout SECONDS]
      start N hosts (default 3) of Debian SUITE (default ${DEFAULT_SUITE}), or one host per
      entry of --suites (in that order; repeats allowed), named NAME1..NAMEN (default "lab");
      returns when each accepts SSH and has ssh, php<ver>-fpm and nginx active (default 90 s)
  prepare [--suite SUITE | --suites SUITE,...]
                               install the machine's packages and build the cached root fs of
                               each suite (what the first \`up\` would do), then return
  suites                       list the Debian suites the lab can boot
  down                         stop and remove everything the lab started
  status                       list the hosts and whether they are up (exit 1 if not all)
  exec NAME -- CMD [ARG...]    run a command as root inside a host
  restart NAME [--timeout S]   power a host off and boot it again, keeping its files

environment:
  BACKLOG_LAB_DIR    lab dir (state, inventory.json, known_hosts, keys); default <repo>/.lab
  BACKLOG_CACHE_DIR  where the root fs is cached; default /var/cache/pulumi-backlog
  BACKLOG_LAB_MIRROR Debian mirror for debootstrap; default: the one apt uses here
  BACKLOG_LAB_MIRROR_<SUITE>  the same for one suite (e.g. BACKLOG_LAB_MIRROR_BULLSEYE)

suites: ${Object.values(RELEASES)
  .map((r) => `${r.suite} (Debian ${r.version}, php${r.php}-fpm)`)
  .join(", ")}`;

function fail(message: string): never {
  process.stderr.write(`lab: ${message}\n`);
  process.exit(1);
}

function positiveInt(value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) fail(`${what} must be a positive integer, not "${value}"`);
  return Number(value);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (process.platform !== "linux" || process.getuid?.() !== 0) {
    const why = process.platform !== "linux" ? `this is ${process.platform}, not Linux` : `you are uid ${process.getuid?.()}`;
    fail(`lab hosts need root on Linux (systemd-nspawn, overlay mounts, network namespaces), but ${why}.\n` + "`npm run test:unit` runs the unit tests only.");
  }
  const dir = labDir();
  const options = {
    hosts: { type: "string" },
    prefix: { type: "string" },
    timeout: { type: "string" },
    suite: { type: "string" },
    suites: { type: "string" },
  } as const;
  /** The suite of each host: --suites as given, or --hosts N (default `hosts`) times --suite. */
  const suitesOf = (values: { hosts?: string; suite?: string; suites?: string }, hosts: number): string[] => {
    if (values.suite !== undefined && values.suites !== undefined) fail("give --suite or --suites, not both");
    const list =
      values.suites !== undefined
        ? values.suites.split(",").map((x) => x.trim())
        : Array<string>(positiveInt(values.hosts, hosts, "--hosts")).fill(values.suite ?? DEFAULT_SUITE);
    if (values.suites !== undefined && values.hosts !== undefined && Number(values.hosts) !== list.length) {
      fail(`--hosts ${values.hosts} does not match the ${list.length} entries of --suites (one host per entry)`);
    }
    for (const s of list) {
      try {
        release(s);
      } catch (e) {
        fail((e as Error).message);
      }
    }
    return list;
  };
  switch (command) {
    case "up": {
      const { values } = parseArgs({ args: rest, options });
      const prefix = values.prefix ?? "lab";
      if (!/^[a-z][a-z0-9-]{0,30}$/.test(prefix)) fail(`--prefix must match [a-z][a-z0-9-]*, not "${prefix}"`);
      await up(dir, suitesOf(values, 3), prefix, positiveInt(values.timeout, 90, "--timeout") * 1000);
      return 0;
    }
    case "prepare": {
      const { values } = parseArgs({ args: rest, options: { suite: options.suite, suites: options.suites } });
      ensureHostPackages();
      for (const [suite, dir] of Object.entries(await ensureRootfses(suitesOf(values, 1)))) {
        console.log(`lab: ${suite} root fs ready at ${dir}`);
      }
      return 0;
    }
    case "suites":
      for (const r of Object.values(RELEASES)) console.log(`${r.suite}\tDebian ${r.version}\tphp${r.php}-fpm${r.suite === DEFAULT_SUITE ? "\t(default)" : ""}`);
      return 0;
    case "down":
      await down(dir);
      return 0;
    case "status":
      return status(dir);
    case "exec": {
      const [name, separator, ...cmd] = rest;
      if (!name || separator !== "--" || cmd.length === 0) fail("usage: npm run lab -- exec NAME -- CMD [ARG...]");
      return exec(dir, name, cmd);
    }
    case "restart": {
      const { values, positionals } = parseArgs({ args: rest, options, allowPositionals: true });
      if (positionals.length !== 1) fail("usage: npm run lab -- restart NAME [--timeout SECONDS]");
      await restart(dir, positionals[0], positiveInt(values.timeout, 90, "--timeout") * 1000);
      return 0;
    }
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => fail(e.message),
);
