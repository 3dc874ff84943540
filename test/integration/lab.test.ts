/**
 * The lab itself: three hosts that are real, separate systems reachable only with the pinned host
 * key, and a `down` that leaves nothing behind.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Lab, requireLabMachine } from "./harness";

jest.setTimeout(300_000);

const lab = new Lab("lab");
type Proc = { pid: number };
let state: { hosts?: { leader?: Proc; nspawn?: Proc; bridge?: Proc }[] } = {};

beforeAll(() => {
  requireLabMachine();
  lab.up(3);
  state = JSON.parse(readFileSync(join(lab.dir, "state.json"), "utf8"));
});

afterAll(() => lab.down());

function ssh(port: number, keyPath: string, knownHosts: string, command: string) {
  return spawnSync(
    "ssh",
    [
      "-i",
      keyPath,
      "-p",
      String(port),
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "BatchMode=yes",
      "-o",
      "ConnectTimeout=10",
      "root@127.0.0.1",
      command,
    ],
    { encoding: "utf8" },
  );
}

test("each host accepts ssh with the inventory's key and its pinned host key", () => {
  expect(lab.hosts).toHaveLength(3);
  expect(lab.hosts.map((h) => h.suite)).toEqual(["bookworm", "bookworm", "bookworm"]); // the default suite
  for (const h of lab.hosts) {
    const r = ssh(h.port, h.privateKeyPath, join(lab.dir, "known_hosts"), "hostname");
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(h.name);
  }
});

test("a wrong pinned host key is refused", () => {
  const [a, b] = lab.hosts;
  const wrong = join(lab.dir, "wrong_known_hosts");
  execFileSync("sh", ["-c", `printf '[127.0.0.1]:%s %s\\n' "$1" "$2" > "$3"`, "sh", String(a.port), b.hostKey, wrong]);
  const r = ssh(a.port, a.privateKeyPath, wrong, "true");
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
});

test("net.core.somaxconn set in one host changes neither the others nor the machine", () => {
  const machine = readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim();
  const [a, b, c] = lab.hosts.map((h) => h.name);
  lab.sh(a, "sysctl -w net.core.somaxconn=777 >/dev/null");
  expect(lab.sh(a, "cat /proc/sys/net/core/somaxconn").trim()).toBe("777");
  expect(lab.sh(b, "cat /proc/sys/net/core/somaxconn").trim()).not.toBe("777");
  expect(lab.sh(c, "cat /proc/sys/net/core/somaxconn").trim()).not.toBe("777");
  expect(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim()).toBe(machine);
});

test("php8.2-fpm, nginx and ssh are active services on every host", () => {
  for (const h of lab.hosts) {
    // is-active prints one line per unit; its exit code is 0 when any one is active, so read the lines.
    expect(lab.unitStates(h.name, "php8.2-fpm", "nginx", "ssh")).toEqual(["active", "active", "active"]);
  }
});

test("down leaves no process, mount or listening port behind", () => {
  const ports = lab.hosts.map((h) => h.port);
  const pids = (state.hosts ?? []).flatMap((h) => [h.leader?.pid, h.nspawn?.pid, h.bridge?.pid]).filter((p): p is number => typeof p === "number");
  expect(pids).toHaveLength(9);
  lab.cli(["down"]);
  const alive = pids.filter((pid) => {
    try {
      // A process the machine's init has not reaped yet shows as a zombie for a moment: it is gone.
      return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return false;
    }
  });
  expect(alive).toEqual([]);
  expect(
    readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .filter((l) => l.includes(lab.dir)),
  ).toEqual([]);
  const listening = execFileSync("ss", ["-H", "-l", "-n", "-t"], { encoding: "utf8" });
  for (const port of ports) expect(listening).not.toContain(`127.0.0.1:${port} `);
});
