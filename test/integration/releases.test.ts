/**
 * One lab with a host of each Debian release the lab builds (11 bullseye, 12 bookworm, 13 trixie):
 * each is reachable over SSH with its pinned host key, runs its own php-fpm (7.4, 8.2, 8.4) with
 * the default pool socket listening, and lets a login session use pidfd_open/pidfd_getfd (the
 * library's live re-listen needs them). Nothing is deployed here.
 */
import { Lab, type LabHost, requireLabMachine } from "./harness";

const RELEASES = [
  { suite: "bullseye", version: "11", php: "7.4" },
  { suite: "bookworm", version: "12", php: "8.2" },
  { suite: "trixie", version: "13", php: "8.4" },
];

// A root fs not built yet is built by `up` first (3 to 5 min; bullseye and trixie together took 224 s here).
jest.setTimeout(120_000);
const lab = new Lab("rel");

/** What one SSH login per host reports, gathered once (keeps the test's wall time low). */
type Facts = Record<string, string>;
const facts = new Map<string, Facts>();

const FACTS_SCRIPT = (php: string) => `
. /etc/os-release; echo "codename=$VERSION_CODENAME"
echo "hostname=$(hostname)"
echo "units=$(systemctl is-active php${php}-fpm nginx ssh | tr '\\n' ' ')"
echo "php=$(php -v | head -n 1)"
echo "fpm=$(command -v php-fpm${php})"
ss -H -l -x | awk '{ print "listen=" $5 }'
perl -e 'my $p = syscall(434, $$ + 0, 0); print "pidfd_open=$p\\npidfd_getfd=", syscall(438, $p, 0, 0), "\\n"'
`;

function parse(output: string): Facts {
  const out: Facts = {};
  for (const line of output.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = out[line.slice(0, i)] === undefined ? line.slice(i + 1) : `${out[line.slice(0, i)]}\n${line.slice(i + 1)}`;
  }
  return out;
}

beforeAll(() => {
  requireLabMachine();
  lab.up(RELEASES.length, { suites: RELEASES.map((r) => r.suite) });
  for (const r of RELEASES) {
    const h = hostOf(r.suite);
    facts.set(r.suite, parse(lab.ssh(h.name, FACTS_SCRIPT(r.php))));
  }
}, 1_800_000);

afterAll(() => lab.down());

function hostOf(suite: string): LabHost {
  const h = lab.hosts.find((x) => x.suite === suite);
  if (!h) throw new Error(`no ${suite} host in the inventory: ${JSON.stringify(lab.hosts)}`);
  return h;
}

test("the inventory has one host per release, each with its suite", () => {
  expect(lab.hosts.map((h) => h.suite)).toEqual(RELEASES.map((r) => r.suite));
  expect(new Set(lab.hosts.map((h) => h.port)).size).toBe(RELEASES.length);
});

describe.each(RELEASES)("Debian $version ($suite)", ({ suite, php }) => {
  const f = () => facts.get(suite)!;

  test("is reachable over SSH with its pinned host key and is that release", () => {
    expect(f().hostname).toBe(hostOf(suite).name);
    expect(f().codename).toBe(suite);
  });

  test(`php${php}-fpm, nginx and ssh are active`, () => {
    expect(f().units.trim().split(" ")).toEqual(["active", "active", "active"]);
    expect(f().fpm).toBe(`/usr/sbin/php-fpm${php}`);
  });

  test(`php -v says ${php}`, () => {
    expect(f().php).toMatch(new RegExp(`^PHP ${php.replace(".", "\\.")}\\.\\d+`));
  });

  test(`the default pool listens on /run/php/php${php}-fpm.sock`, () => {
    expect(f().listen.split("\n")).toContain(`/run/php/php${php}-fpm.sock`);
  });

  test("a login session may use pidfd_open and pidfd_getfd", () => {
    expect(Number(f().pidfd_open)).toBeGreaterThanOrEqual(0);
    expect(Number(f().pidfd_getfd)).toBeGreaterThanOrEqual(0);
  });
});
