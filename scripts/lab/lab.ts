/**
 * Disposable Debian lab hosts for the integration tests: `npm run lab -- <command>`.
 * See scripts/lab/README.md for what a host is and the inventory format.
 */
import { parseArgs } from "node:util";
import { down, exec, labDir, restart, status, up } from "./hosts.ts";
import { ensureHostPackages, ensureRootfs } from "./rootfs.ts";

const USAGE = `usage: npm run lab -- <command>

  up [--hosts N] [--prefix NAME] [--timeout SECONDS]
      start N hosts (default 3) named NAME1..NAMEN (default "lab"); returns when
      each accepts SSH and has ssh, php8.2-fpm and nginx active (default 90 s)
  prepare                      install the machine's packages and build the cached root fs
                               (what the first \`up\` would do), then return
  down                         stop and remove everything the lab started
  status                       list the hosts and whether they are up (exit 1 if not all)
  exec NAME -- CMD [ARG...]    run a command as root inside a host
  restart NAME [--timeout S]   power a host off and boot it again, keeping its files

environment:
  BACKLOG_LAB_DIR    lab dir (state, inventory.json, known_hosts, keys); default <repo>/.lab
  BACKLOG_CACHE_DIR  where the root fs is cached; default /var/cache/pulumi-backlog
  BACKLOG_LAB_MIRROR Debian mirror for debootstrap; default: the one apt uses here`;

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
    fail(
      `lab hosts need root on Linux (systemd-nspawn, overlay mounts, network namespaces), but ${why}.\n` +
        "`npm run test:unit` runs the unit tests only.",
    );
  }
  const dir = labDir();
  const options = {
    hosts: { type: "string" },
    prefix: { type: "string" },
    timeout: { type: "string" },
  } as const;
  switch (command) {
    case "up": {
      const { values } = parseArgs({ args: rest, options });
      const prefix = values.prefix ?? "lab";
      if (!/^[a-z][a-z0-9-]{0,30}$/.test(prefix)) fail(`--prefix must match [a-z][a-z0-9-]*, not "${prefix}"`);
      const hosts = positiveInt(values.hosts, 3, "--hosts");
      await up(dir, hosts, prefix, positiveInt(values.timeout, 90, "--timeout") * 1000);
      return 0;
    }
    case "prepare":
      ensureHostPackages();
      console.log(`lab: root fs ready at ${await ensureRootfs()}`);
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
