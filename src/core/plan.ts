/**
 * Host plan: the shell scripts that probe, apply and restore a host, generated as plain strings
 * from plain data. Nothing here touches a host; {@link ./ssh} runs the scripts and
 * {@link ./report} reads what they print. Every value that reaches a script goes through `quote`
 * from {@link ./shell}; file contents travel base64-encoded in here-documents.
 *
 * Every apply is a small transaction (see docs/transactions.md):
 * - one run at a time per host: `flock` on a root-only path, a bounded wait, the holder named;
 * - a journal (`<state>/txn/open`) written before the first change; the copies needed to undo the
 *   run (each file as it was, each kernel value, the units touched) kept beside it; a run that finds
 *   an open journal (an earlier run was cut short) rolls it back before anything else;
 * - every write: temp file in the target's directory, content checked against its sha256, flushed,
 *   renamed; originals copied and compared before anything replaces them;
 * - any failed step puts everything back (files, kernel values, services on the old files) and
 *   exits with the step's code; a lost connection (SIGHUP/SIGPIPE) or SIGTERM does the same.
 *
 * Report format: sections, each a line `@@<token> <name> [<arg>]` followed by raw lines. The token
 * is random per run and never appears on a command line on the host, so nothing an unprivileged
 * user prints (a socket name, a file name) can start a section.
 */
import { createHash, randomBytes } from "node:crypto";
import { quote } from "./shell";

/** Where the library keeps a host's state: originals, journal, owners, values set. */
export const STATE_DIR = "/var/lib/pulumi-backlog";
/** Root-only directory of the host-wide lock (and the test-only pause hooks). */
export const RUN_DIR = "/run/pulumi-backlog";

/** Exit codes of the host scripts (beside 0). */
export const SCRIPT_EXIT = Object.freeze({
  /** A service's configuration test failed: files put back, no service touched. */
  configTest: 10,
  /** `sysctl -p` of the drop-in failed: everything put back. */
  sysctl: 11,
  /**
   * A restart or reload failed, or after them a socket of the profile did not listen within
   * {@link LISTEN_WAIT_SECONDS}: everything put back, the service reloaded or started again on the old files.
   */
  service: 12,
  /** A file (or an original, or a state entry) could not be written: everything put back. */
  write: 13,
  /** Another run holds the host's lock. Nothing changed. */
  locked: 14,
  /** A port the new configuration listens on is held by a process outside the managed units. Nothing changed. */
  portTaken: 15,
  /** An interrupted earlier run could not be rolled back. Nothing else was done. */
  recovery: 16,
  /** The script was interrupted (lost connection, SIGTERM): everything put back. */
  interrupted: 17,
  /** A restore step failed: the state directory is kept so that a later destroy can finish. */
  restore: 18,
  /** Another run changed the host after this run's probe: its decisions are stale. Nothing changed. */
  stale: 19,
});

/** A file the library owns on a host. */
export interface ManagedFile {
  /** Absolute path on the host. */
  path: string;
  /** Exact content (UTF-8). */
  content: string;
  /** Octal permission bits, e.g. `"0644"`. */
  mode: string;
  /** Owner user name. */
  owner: string;
  /** Owner group name. */
  group: string;
  /**
   * Values known only on the host, when the script runs (optional: without it the content is
   * written byte for byte). Each key is a placeholder that occurs in `content` (`@NAME@`:
   * capitals, digits and `_` between two `@`); its value names a shell variable that the script
   * running the apply steps has set before them (src/core/standalone.ts does, for kernel values
   * read on the host). As the file is written each placeholder becomes the variable's value, which
   * must be a whole number, and a line holding a placeholder whose variable is empty is left out.
   * Any other value stops the apply (exit 13, everything put back).
   */
  runtimeValues?: Record<string, string>;
}

/** One listening socket to listen() again with a new backlog, as the probe found it. */
export interface RelistenSocket {
  /** Socket inode (`ss` prints it; `/proc/PID/fd/N` links to `socket:[inode]`). */
  inode: number;
  /** The backlog to pass to listen() (the kernel caps it at net.core.somaxconn). */
  backlog: number;
  /** The socket's backlog now (`ss` Send-Q), given back if the transaction rolls back. */
  oldBacklog: number;
  /** What the socket is, for messages: a unix path or `host:port`. */
  label: string;
}

/**
 * What to do with a service after its files changed, least disruptive first:
 * - `none`: nothing;
 * - `relisten`: call listen() again on each running socket of {@link ManagedService.relisten} (the
 *   kernel changes its queue length in place; no connection is lost). Falls back to a restart,
 *   with the reason printed, where that cannot work;
 * - `reload`: `systemctl reload` (php-fpm: pm.* and other directives; nginx: server blocks), then
 *   the sockets of {@link ManagedService.relisten} are listened again;
 * - `restart`: `systemctl restart` (a listen address, socket owner/group/mode, or a fallback).
 */
export type ServiceAction = "none" | "relisten" | "reload" | "restart";

/** A service whose configuration is among the managed files. */
export interface ManagedService {
  /** systemd unit, e.g. `php8.2-fpm` or `nginx`. */
  unit: string;
  /** Command (argv) that tests the whole configuration, e.g. `["php-fpm8.2", "-t"]`. */
  test: string[];
  /** What to do after the files changed. */
  action: ServiceAction;
  /** Why this action (shown in previews and outputs). */
  reason?: string;
  /** Sockets to listen() again (actions `relisten` and `reload`). */
  relisten?: RelistenSocket[];
  /**
   * TCP ports the new configuration listens on: before anything changes, each is checked for a
   * listening socket held by a process outside the managed units (the apply stops, exit 15).
   */
  ports?: number[];
  /**
   * The action is decided on the host during the apply (the standalone script, which has no probe
   * before it): names of the shell variables that hold, once {@link ApplyPlan.beforeServices} has
   * run, the action (`none`, `relisten`, `reload`, `restart`), its reason, the sockets to listen()
   * again (` inode=backlog` pairs) and their backlogs now (` inode=backlog`, for a rollback);
   * `announce` names a shell function called as `announce UNIT TEXT` when a relisten falls back to
   * a restart. {@link action} and {@link relisten} are then ignored. Default: decided in the program.
   */
  decidedOnHost?: { action: string; reason: string; pairs: string; olds: string; announce?: string };
}

/**
 * How long an apply waits, after its service steps and before it commits, for a socket of the
 * managed units to listen on each of the profile's sockets (seconds; capped by the step timeout;
 * another process's socket there does not count). A reload is asynchronous:
 * nginx opens a new listener, and php-fpm's re-executed master its sockets, after `systemctl
 * reload` has returned; a socket still missing then fails the apply (exit 12) and everything is put
 * back. Normally they are there at the first look (no wait).
 */
export const LISTEN_WAIT_SECONDS = 10;

/** What one apply run does on one host. */
export interface ApplyPlan {
  /** The host's state directory. Default {@link STATE_DIR}. */
  stateDir: string;
  /**
   * Who applies: names this deployment's entry among the host's owners (the resource name, or
   * `standalone`). Pattern {@link OWNER_PATTERN}. Originals are kept once per host, whoever came
   * first; restore gives back only what no other owner still manages.
   */
  owner: string;
  files: ManagedFile[];
  /** The sysctl drop-in among {@link files}, loaded with `sysctl -p`; omitted when no kernel value is managed. */
  sysctlFile?: string;
  /** Kernel keys (dotted, e.g. `net.core.somaxconn`) whose values before the first deploy are kept for restore. */
  sysctlKeys: string[];
  services: ManagedService[];
  /**
   * Files an earlier deploy of this owner managed that the profile no longer has (a pool removed,
   * say): each is given back as it was before the first deploy, like destroy does for all files.
   */
  retired?: string[];
  /**
   * Decide the retired files on the host instead (the standalone script, which has no probe
   * before it): every file this owner managed last time that is not in {@link files} and that no
   * other owner manages goes back to its original. Names of the retired files are printed
   * (`@@<token> retired <path>`) and each changes its service's need (see the standalone script).
   */
  retireStale?: boolean;
  /**
   * Shell lines run inside the transaction after the files are written, tested and `sysctl -p`
   * loaded, just before the service steps: where the standalone script decides each service's
   * action ({@link ManagedService.decidedOnHost}). A failing service step after them still rolls
   * everything back. Default: none.
   */
  beforeServices?: string[];
  /**
   * The host's own value of each kernel key this deploy assumed (see converge.ts `hostOwnValues`),
   * kept on the host so that the next deploy still knows a value raised by hand was the host's.
   */
  hostOwn?: Record<string, number>;
  /** The sockets the report at the end shows, for verification: unix paths and TCP ports. */
  sockets: { unixPaths: string[]; tcpPorts: number[] };
  /**
   * The host's state generation the probe saw (each committed apply adds one). Under the lock the
   * apply checks it first: when another run changed the host in between, it stops (exit 19)
   * before touching anything, instead of acting on stale decisions. Omitted: not checked.
   */
  generation?: number;
  /** State directory name of the 0.1 layout (`<state>/<name>/`), moved into place once. */
  legacyName?: string;
  /**
   * Lines of other sysctl files to comment out (mode `conflicts: "neutralize"`), per real file (not
   * a link): each line number with its text as the probe read it (trimmed; the run stops, exit 19,
   * when the line differs by then). The line becomes {@link NEUTRALIZED_PREFIX} + the line. The
   * file's original is kept once, like a managed file's, and the file joins this owner's files, so
   * destroy puts it back byte for byte; a failed run puts it back too. Default: none.
   */
  neutralize?: { path: string; lines: { line: number; text: string }[] }[];
  /** Files neutralized by an earlier deploy that stay this owner's (so destroy gives them back). Default: none. */
  neutralized?: string[];
  /**
   * Conflicting sysctl lines decided on the host instead of {@link neutralize} (the standalone
   * script, which has no probe before it): a shell command run inside the transaction, under the
   * lock, after the files are written, that prints one line per line to comment out,
   * `PATH<TAB>LINE<TAB>TEXT` (TEXT trimmed, as the listing of {@link sysctlListing} shows it). Each
   * is commented out as {@link neutralize} does; these files, and every sysctl file (`sourcePattern`)
   * this owner's record already holds, stay this owner's: {@link retireStale} does not give them back.
   * `sourcePattern` is a shell `case` pattern of the sysctl files. Default: none.
   */
  neutralizeOnHost?: { list: string; sourcePattern: string };
}

/** What a neutralized sysctl line starts with (src/core/sysctlSources.ts NEUTRALIZED_MARKER). */
export const NEUTRALIZED_PREFIX = "# pulumi-backlog neutralized (conflicts with the drop-in; destroy puts it back): ";

/** Options every script takes. */
export interface ScriptOptions {
  /** Report token (see {@link reportToken}); the parser needs the same one. */
  token: string;
  /** Root-only run directory (lock, pause hooks). Default {@link RUN_DIR}; tests use a temp dir. */
  runDir?: string;
  /** Seconds each service command (test, restart, reload) may take before it is stopped. Default 90. */
  stepTimeoutSeconds?: number;
  /** Seconds to wait for another run's lock. Default 120. */
  lockWaitSeconds?: number;
}

/** What a probe (or the report at the end of an apply or restore) reads. */
export interface ProbeSpec {
  stateDir: string;
  /** This deployment's owner name (see {@link ApplyPlan.owner}). */
  owner: string;
  sysctlKeys: string[];
  paths: string[];
  units: string[];
  /** Unix socket paths whose listening sockets are reported. */
  unixPaths: string[];
  /** TCP ports whose listening sockets are reported. */
  tcpPorts: number[];
  /**
   * Find the host's php-fpm: its units (`php*-fpm.service`) with their state, and for each the
   * pool files named here (basenames, e.g. `app.conf`) in that version's pool directory
   * (`/etc/php/<version>/fpm/pool.d`, or `/etc/php-fpm.d` for a unit named `php-fpm`).
   */
  discoverPhp?: { poolFiles: string[] };
}

/** Owner names: a resource name's safe form (no `/`, not `.` or `..`, not a state entry's name). */
export const OWNER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Checks an owner name; throws naming the value and the rule. */
export function checkOwner(owner: string): string {
  if (typeof owner !== "string" || !OWNER_PATTERN.test(owner) || ["orig", "txn", "owners"].includes(owner)) {
    throw new Error(
      `owner ${JSON.stringify(owner)}: must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit, and not orig, txn or owners`,
    );
  }
  return owner;
}

/** A fresh random report token (hex, 32 characters). */
export function reportToken(): string {
  return randomBytes(16).toString("hex");
}

/** Directories systemd-sysctl reads at boot, in precedence order for equal file names (first wins). */
export const SYSCTL_DIRS = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];

/** `/proc/sys` path of a dotted sysctl key. */
export function procPath(key: string): string {
  if (!/^[a-z0-9_]+(\.[a-z0-9_]+)+$/.test(key)) {
    throw new Error(`sysctl key ${JSON.stringify(key)} is not a dotted kernel parameter name`);
  }
  return "/proc/sys/" + key.replace(/\./g, "/");
}

/** Name under which a file's original is kept in the state directory. */
export function backupName(path: string): string {
  return createHash("sha256").update(path).digest("hex").slice(0, 16);
}

/** sha256 of a file's content, as `sha256sum` prints it. */
export function contentHash(content: string): string {
  return createHash("sha256").update(content, "utf8").digest("hex");
}

/**
 * Shell for a deliberate restart or reload of a unit, bounded by `timeout`. systemd refuses a
 * fifth start within 10 s (StartLimitBurst) and then leaves the unit failed, that is, down: a
 * deploy's restart is no crash loop, so the unit's start counter is reset first.
 */
export function serviceAction(action: "restart" | "reload", unit: string, timeoutSeconds = 90): string {
  return `systemctl reset-failed ${quote(unit)} >/dev/null 2>&1; timeout -k 5 ${Math.trunc(timeoutSeconds)} systemctl ${action} ${quote(unit)}`;
}

function checkUnit(unit: string): string {
  if (!/^[A-Za-z0-9@_.+-]{1,128}$/.test(unit)) throw new Error(`unit ${JSON.stringify(unit)}: must be a systemd unit name`);
  return unit;
}

function checkNumber(n: number, what: string, max = 2147483647): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new Error(`${what} ${JSON.stringify(n)}: must be a whole number from 0 to ${max}`);
  return n;
}

/**
 * Program that listens again on sockets held by a unit's processes (perl: essential on Debian and
 * Ubuntu). Arguments: the unit's cgroup directory, then `inode=backlog` pairs. For each inode it
 * finds a process of the cgroup holding `socket:[inode]`, duplicates that descriptor with
 * pidfd_open + pidfd_getfd (Linux >= 5.6) and calls listen(dup, backlog). Exit 3: a socket is not
 * held by the unit; 4: a system call failed; 5: unsupported architecture. Touches nothing else.
 */
const RELISTEN_PERL = String.raw`
use strict; use warnings; use POSIX ();
my %nr = (x86_64 => [434, 438, 50], aarch64 => [434, 438, 201]);
my $arch = (POSIX::uname())[4];
my $n = $nr{$arch} or do { print "arch $arch has no known syscall numbers\n"; exit 5 };
my ($cg, @pairs) = @ARGV;
my @pids;
my @dirs = ($cg);
while (my $d = shift @dirs) {
  opendir(my $dh, $d) or next;
  for my $e (readdir $dh) { next if $e =~ /^\./; push @dirs, "$d/$e" if -d "$d/$e" && ! -l "$d/$e"; }
  closedir $dh;
  if (open(my $fh, '<', "$d/cgroup.procs")) { while (<$fh>) { push @pids, $1 if /^(\d+)$/; } close $fh; }
}
my %want = map { /^(\d+)=(\d+)$/ or die "bad pair"; ($1 => $2) } @pairs;
my %at;
PID: for my $pid (@pids) {
  opendir(my $fd, "/proc/$pid/fd") or next;
  for my $f (readdir $fd) {
    next unless $f =~ /^\d+$/;
    my $l = readlink("/proc/$pid/fd/$f") // next;
    if ($l =~ /^socket:\[(\d+)\]$/ && exists $want{$1} && !exists $at{$1}) { $at{$1} = [$pid, $f]; }
  }
  closedir $fd;
}
for my $ino (sort keys %want) {
  my $where = $at{$ino} or do { print "socket $ino is not held by the unit's processes\n"; exit 3 };
  my ($pid, $fd) = @$where;
  my $pidfd = syscall($n->[0], $pid + 0, 0);
  if ($pidfd < 0) { print "pidfd_open($pid): $!\n"; exit 4 }
  my $dup = syscall($n->[1], $pidfd, $fd + 0, 0);
  if ($dup < 0) { print "pidfd_getfd($pid, $fd): $!\n"; POSIX::close($pidfd); exit 4 }
  my $r = syscall($n->[2], $dup, $want{$ino} + 0);
  my $err = $!;
  POSIX::close($dup); POSIX::close($pidfd);
  if ($r < 0) { print "listen(socket $ino): $err\n"; exit 4 }
  print "listened socket $ino of pid $pid with backlog $want{$ino}\n";
}
`;

/** The same program for hosts with python3 but no perl. */
const RELISTEN_PYTHON = String.raw`
import ctypes, os, platform, re, sys
nr = {"x86_64": (434, 438, 50), "aarch64": (434, 438, 201)}.get(platform.machine())
if nr is None:
    print("arch %s has no known syscall numbers" % platform.machine()); sys.exit(5)
libc = ctypes.CDLL(None, use_errno=True)
cg, pairs = sys.argv[1], sys.argv[2:]
want = {}
for p in pairs:
    i, b = p.split("=")
    want[int(i)] = int(b)
pids = []
for d, dirs, files in os.walk(cg, followlinks=False):
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            pids += [int(x) for x in f.read().split() if x.isdigit()]
    except OSError:
        pass
at = {}
for pid in pids:
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        try:
            m = re.match(r"^socket:\[(\d+)\]$", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m and int(m.group(1)) in want and int(m.group(1)) not in at:
            at[int(m.group(1))] = (pid, int(fd))
for ino in sorted(want):
    if ino not in at:
        print("socket %d is not held by the unit's processes" % ino); sys.exit(3)
    pid, fd = at[ino]
    pidfd = libc.syscall(nr[0], pid, 0)
    if pidfd < 0:
        print("pidfd_open(%d): %s" % (pid, os.strerror(ctypes.get_errno()))); sys.exit(4)
    dup = libc.syscall(nr[1], pidfd, fd, 0)
    if dup < 0:
        print("pidfd_getfd(%d, %d): %s" % (pid, fd, os.strerror(ctypes.get_errno()))); os.close(pidfd); sys.exit(4)
    r = libc.syscall(nr[2], dup, want[ino])
    err = ctypes.get_errno()
    os.close(dup); os.close(pidfd)
    if r < 0:
        print("listen(socket %d): %s" % (ino, os.strerror(err))); sys.exit(4)
    print("listened socket %d of pid %d with backlog %d" % (ino, pid, want[ino]))
`;

/**
 * The fixed part of every script: settings, report markers, lock, journal, rollback and the
 * helpers the generated steps call. `T` (token), `S` (state dir), `OWNER`, `R` (run dir) and `ST`
 * (step timeout) are set before it.
 */
const LIBRARY = String.raw`
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 077
PB_STEP=start
pb_at() { printf '@@%s %s\n' "$T" "$*"; }
pb_pause() {
  local n
  [ -e "$R/pause.$1" ] || return 0
  echo "$$" > "$R/paused.$1"; n=0
  while [ -e "$R/pause.$1" ] && [ "$n" -lt 3000 ]; do sleep 0.2; n=$((n + 1)); done
  rm -f "$R/paused.$1"
  # Said again on resuming, so that a connection lost during the pause is noticed at this step.
  pb_at "step $1"
}
pb_step() { PB_STEP=$1; pb_at "step $1"; pb_pause "$1"; }
pb_lock() {
  mkdir -p "$R" && chmod 700 "$R" || { pb_at "failed lock"; echo "cannot create $R"; exit 14; }
  if [ -L "$R" ] || [ "$(stat -c %u "$R")" != "$(id -u)" ]; then pb_at "failed lock"; echo "$R is not a directory owned by this user"; exit 14; fi
  exec 9>"$R/lock"
  if ! flock -w "$LOCKWAIT" 9; then
    pb_at "failed lock"; echo "another pulumi-backlog run holds the host's lock after \${LOCKWAIT} s: $(cat "$R/holder" 2>/dev/null | tr -cd '[:print:]')"; exit 14
  fi
  printf '%s (pid %s, since %s)\n' "$OWNER" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$R/holder"
}
# Copies $1 to the managed path $2 through a temp name, compared and flushed before it takes the name.
pb_copy() {
  local d t
  d=\${2%/*}; d=\${d:-/}
  t=$(mktemp "$d/.pulumi-backlog.XXXXXX") || return 1
  if cp -p "$1" "$t" && cmp -s "$1" "$t" && pb_flush "$t" && mv -f "$t" "$2"; then return 0; fi
  rm -f "$t"; return 1
}
# Records written in the state directory since the last pb_flush (paths without blanks: $S is checked).
PB_DIRTY=''
# Makes the records durable, with the files named (a temp file about to take a managed name): one
# fsync each, in one process, before anything they protect is replaced.
pb_flush() {
  [ -n "$PB_DIRTY$*" ] || return 0
  sync -- $PB_DIRTY "$@" || return 1
  PB_DIRTY=''
}
# Writes the text $2 to the state file $1 through a fixed temp name ($S is root's alone, and the
# lock is held); made durable by the next pb_flush.
pb_note() {
  if printf '%s\n' "$2" > "$1.pb-new" && mv -f "$1.pb-new" "$1"; then PB_DIRTY="$PB_DIRTY $1"; return 0; fi
  rm -f "$1.pb-new"; return 1
}
# Keeps a copy of file $1 as the state file $2. Written in place: a kept copy counts only once
# its .path record exists, which is written after it.
pb_keep_copy() {
  if cp -p "$1" "$2"; then PB_DIRTY="$PB_DIRTY $2"; return 0; fi
  rm -f "$2"; return 1
}
# Keeps file $1 (backup name $2) as it is now, once per run, so that a rollback can put it back.
pb_txn_keep() {
  [ -f "$S/txn/f/$2.path" ] && return 0
  if [ -e "$1" ]; then pb_keep_copy "$1" "$S/txn/f/$2.file" || return 1; else : > "$S/txn/f/$2.absent" || return 1; fi
  pb_note "$S/txn/f/$2.path" "$1"
}
# Keeps file $1 (backup name $2) as it was before the first deploy, once per host.
pb_orig_keep() {
  [ -f "$S/orig/$2.path" ] && return 0
  if [ -e "$1" ]; then pb_keep_copy "$1" "$S/orig/$2.file" || return 1; else : > "$S/orig/$2.absent" || return 1; fi
  pb_note "$S/orig/$2.path" "$1"
}
# Installs a file: path, backup name, mode, owner:group, sha256 of the decoded content, then
# optional sed expressions for run-time values; the base64 content comes on standard input.
pb_put() {
  local p b m og sum d t t2 h
  p=$1; b=$2; m=$3; og=$4; sum=$5; shift 5
  d=\${p%/*}; d=\${d:-/}
  { [ -d "$d" ] || mkdir -p "$d"; } && t=$(mktemp "$d/.pulumi-backlog.XXXXXX") || return 1
  if ! base64 -d > "$t" || ! h=$(sha256sum < "$t") || [ "\${h%% *}" != "$sum" ]; then rm -f "$t"; return 1; fi
  if [ $# -gt 0 ]; then
    t2=$(mktemp "$d/.pulumi-backlog.XXXXXX") || { rm -f "$t"; return 1; }
    if ! sed "$@" "$t" > "$t2"; then rm -f "$t" "$t2"; return 1; fi
    mv -f "$t2" "$t" || { rm -f "$t" "$t2"; return 1; }
  fi
  if ! chmod "$m" "$t" || ! chown "$og" "$t"; then rm -f "$t"; return 1; fi
  if [ -f "$p" ] && cmp -s "$t" "$p"; then
    rm -f "$t"
    # Same content: the mode and owner still follow the plan.
    if [ "$(stat -c '%a %U:%G' "$p")" != "\${m#0} $og" ]; then
      pb_orig_keep "$p" "$b" && pb_txn_keep "$p" "$b" && chmod "$m" "$p" && chown "$og" "$p" || return 1
      PB_CHANGED="$PB_CHANGED $b"
    fi
    return 0
  fi
  if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    if [ -e "$p" ]; then chcon --reference="$p" "$t" 2>/dev/null; else restorecon "$t" 2>/dev/null; fi
  fi
  pb_orig_keep "$p" "$b" && pb_txn_keep "$p" "$b" && pb_flush "$t" && mv -f "$t" "$p" || { rm -f "$t"; return 1; }
  PB_CHANGED="$PB_CHANGED $b"
}
# Comments out lines of the sysctl file $1 (backup name $2); then pairs of line number and the
# line's trimmed text as probed (a line that differs stops it). Keeps the original once.
pb_neutralize() {
  local p b d t n x have
  p=$1; b=$2; shift 2
  if [ -L "$p" ] || [ ! -f "$p" ]; then echo "$p is not a regular file"; return 1; fi
  d=\${p%/*}; d=\${d:-/}
  t=$(mktemp "$d/.pulumi-backlog.XXXXXX") || return 1
  cp -p "$p" "$t" || { rm -f "$t"; return 1; }
  while [ $# -ge 2 ]; do
    n=$1; x=$2; shift 2
    have=$(sed -n "\${n}p" "$t" | tr -d '\000-\010\013-\037\177' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    if [ "$have" != "$x" ]; then echo "line $n of $p changed since the probe"; rm -f "$t"; return 19; fi
    if ! awk -v n="$n" -v m="$PB_NEUTRAL" 'NR == n { print m $0; next } { print }' "$t" > "$t.n" || ! cat "$t.n" > "$t"; then rm -f "$t" "$t.n"; return 1; fi
    rm -f "$t.n"
  done
  pb_orig_keep "$p" "$b" && pb_txn_keep "$p" "$b" && pb_flush "$t" && mv -f "$t" "$p" || { rm -f "$t"; return 1; }
  PB_CHANGED="$PB_CHANGED $b"
}
# Prints the report section of file $1 (what a rollback would give back while a journal is open;
# $2, when given, is its backup name).
pb_file() {
  local f b h
  f=$1; b=\${2-}
  pb_at "file $1"
  if [ -e "$S/txn/open" ]; then
    [ -n "$b" ] || { h=$(printf '%s' "$1" | sha256sum); b=\${h%"\${h#????????????????}"}; }
    if [ -f "$S/txn/f/$b.path" ]; then if [ -f "$S/txn/f/$b.absent" ]; then f=; else f="$S/txn/f/$b.file"; fi; fi
  fi
  if [ -n "$f" ] && [ -f "$f" ] && h=$(sha256sum < "$f"); then echo "\${h%% *}"; if [ "$(wc -c < "$f")" -le 65536 ]; then base64 -w0 < "$f"; echo; fi; else echo '!absent'; fi
}
# Gives back the original of path $1 (backup name $2): through the transaction when one is open.
pb_give_back() {
  if [ ! -f "$S/orig/$2.path" ]; then return 0; fi
  if [ -d "$S/txn" ]; then pb_txn_keep "$1" "$2" || return 1; fi
  if [ -f "$S/orig/$2.absent" ]; then pb_flush && rm -f "$1"; else pb_copy "$S/orig/$2.file" "$1"; fi
}
# The cgroup directory of unit $1 (from the cache pb_cg_warm filled, else from systemd).
pb_cgroup() {
  local cg
  case $PB_CGS in *" $1="*) cg=\${PB_CGS#*" $1="}; echo "\${cg%% *}"; return 0;; esac
  cg=$(systemctl show -P ControlGroup "$1" 2>/dev/null)
  [ -n "$cg" ] || return 1
  if [ -d "/sys/fs/cgroup/unified$cg" ]; then echo "/sys/fs/cgroup/unified$cg"; elif [ -d "/sys/fs/cgroup$cg" ] && [ -f "/sys/fs/cgroup/cgroup.controllers" ]; then echo "/sys/fs/cgroup$cg"; else echo "/sys/fs/cgroup/systemd$cg"; fi
}
# Looks up the units' cgroups once, in this shell: the steps that need them run in subshells. A
# unit's cgroup keeps its path across restarts; a unit without one now is looked up again later.
PB_CGS=''
pb_cg_warm() {
  local u cg
  for u in "$@"; do cg=$(pb_cgroup "$u") && PB_CGS="$PB_CGS $u=$cg "; done
}
# listen() again on sockets of a unit: unit, then inode=backlog pairs. Prints why it cannot.
pb_relisten() {
  local unit cg
  unit=$1; shift
  cg=$(pb_cgroup "$unit") || { echo "no cgroup for $unit"; return 2; }
  if command -v perl >/dev/null 2>&1; then
    timeout -k 5 "$ST" perl -e "$PB_RELISTEN_PL" "$cg" "$@"
  elif command -v python3 >/dev/null 2>&1; then
    timeout -k 5 "$ST" python3 -c "$PB_RELISTEN_PY" "$cg" "$@"
  else
    echo "neither perl nor python3 on the host"; return 2
  fi
}
# The socket inodes of processes in the managed units' cgroups, one a line (one find for all).
pb_unit_inodes() {
  local u cg pid fds
  fds=''
  for pid in $(for u in "$@"; do cg=$(pb_cgroup "$u") && find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null; done); do
    case $pid in ''|*[!0-9]*) continue;; esac
    fds="$fds /proc/$pid/fd"
  done
  [ -n "$fds" ] || return 0
  find $fds -mindepth 1 -maxdepth 1 -lname 'socket:\[*\]' -printf '%l\n' 2>/dev/null | sed -n 's/^socket:\[\([0-9][0-9]*\)\]$/\1/p'
}
# Fails unless every listening socket on TCP port $1 is held by the units named after it.
pb_port_free() {
  local port inodes own i holder fd pid
  port=$1; shift
  inodes=$(ss -H -l -n -t -e "sport = :$port" 2>/dev/null | sed -n 's/.* ino:\([0-9]*\).*/\1/p')
  [ -n "$inodes" ] || return 0
  own=" $(pb_unit_inodes "$@" | tr '\n' ' ')"
  for i in $inodes; do
    case $own in *" $i "*) continue;; esac
    holder=""
    for fd in /proc/[0-9]*/fd/*; do
      [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$i]" ] || continue
      pid=\${fd#/proc/}; pid=\${pid%%/*}
      holder="pid $pid ($(tr -cd '[:alnum:]._ -' < /proc/"$pid"/comm 2>/dev/null))"; break
    done
    echo "TCP port $port is already held by another process: \${holder:-socket $i}"
    return 1
  done
}
# Puts back everything the open transaction recorded: files, kernel values, sockets, services.
pb_rollback() {
  local rb pf p n k key s unit pairs u act
  [ -d "$S/txn" ] || return 0
  # A journal directory without its open mark is a commit that did not finish removing it.
  if [ ! -e "$S/txn/open" ]; then rm -rf "$S/txn"; return 0; fi
  rb=0
  for pf in "$S"/txn/f/*.path; do
    [ -f "$pf" ] || continue
    p=$(cat "$pf"); n=\${pf%.path}
    if [ -f "$n.absent" ]; then rm -f "$p" || rb=1; elif [ -f "$n.file" ]; then pb_copy "$n.file" "$p" || rb=1; fi
  done
  # A record's temp name (pb_note, a run killed between its write and its rename) is no record.
  for k in "$S"/txn/k/*; do
    [ -f "$k" ] || continue
    case $k in *.pb-new) continue;; esac
    key=\${k##*/}
    cat "$k" > "/proc/sys/$(printf '%s' "$key" | tr . /)" || rb=1
  done
  for s in "$S"/txn/s/*; do
    [ -f "$s" ] || continue
    case $s in *.pb-new) continue;; esac
    read -r unit pairs < "$s"
    pb_relisten "$unit" $pairs >/dev/null 2>&1 || rb=1
  done
  # A unit this run only reloaded, and still running, is reloaded on the files put back (nginx keeps
  # its connections); any other is restarted on them.
  for u in "$S"/txn/u/*; do
    [ -f "$u" ] || continue
    unit=\${u##*/}; act=''
    read -r act < "$u"
    if [ "$act" = reload ] && systemctl is-active --quiet "$unit" 2>/dev/null; then
      timeout -k 5 "$ST" systemctl reload "$unit" >/dev/null 2>&1 && continue
    fi
    systemctl reset-failed "$unit" >/dev/null 2>&1
    timeout -k 5 "$ST" systemctl restart "$unit" >/dev/null 2>&1 || rb=1
  done
  if [ "$rb" = 0 ]; then rm -rf "$S/txn"; return 0; fi
  return 1
}
# pb_service ACTION UNIT SECONDS: the unit journaled with its action (a rollback reloads or
# restarts it), then restarted or reloaded within SECONDS (serviceAction); if that fails, its
# status and everything put back (exit 12). A restart after a reload journals the restart.
pb_service() {
  printf '%s\n' "$1" > "$S/txn/u/$2" || pb_fail 13 "journal $2"
  if ! out=$(systemctl reset-failed "$2" >/dev/null 2>&1; timeout -k 5 "$3" systemctl "$1" "$2" 2>&1); then
    st=$(systemctl status --no-pager "$2" 2>&1 | tail -n 15); pb_fail 12 "$1 $2" "$out" "$st"
  fi
}
# pb_listening SECONDS UNIT... -- UNIX_PATH... -- TCP_PORT...: waits up to SECONDS (tenths) until a
# socket of the units listens on each path and port (another process's does not count): a reload
# returns before the service has loaded its files (php-fpm re-executes, nginx opens new listeners
# in its master), so a socket it could not open shows here, in the transaction.
pb_listening() {
  local w n m a x u o i k g
  w=$(($1 * 10)); shift; n=0; u=''
  while [ $# -gt 0 ] && [ "$1" != -- ]; do u="$u $1"; shift; done; [ $# -eq 0 ] || shift
  while :; do
    m=''; x=unix; o=" $(pb_unit_inodes $u | tr '\n' ' ')"
    # No unit's cgroup known here (the host cannot say): any socket there counts.
    g=''; for i in $u; do pb_cgroup "$i" >/dev/null && g=1; done
    for a; do
      if [ "$a" = -- ]; then x=tcp; continue; fi
      if [ $x = unix ]; then i=$(ss -Hlnx src "$a" | awk '{print $1 ~ /^u_/ ? $6 : $5}'); else i=$(ss -Hlnte "sport = :$a" | sed -n 's/.* ino:\([0-9]*\).*/\1/p'); fi
      k=''; for i in $i; do case $o in *" $i "*) k=1;; esac; [ -n "$g" ] || k=1; done
      [ -n "$k" ] || m="$m $x $a,"
    done
    [ -n "$m" ] || return 0
    if [ $n -ge $w ]; then echo "after the service steps, no socket of$u listens on:\${m%,} (waited $((w / 10)) s): the service did not load the new files"; return 1; fi
    sleep 0.1; n=$((n + 1))
  done
}
# Stops at a failed step: everything put back, the step and its output reported, exit code $1.
pb_fail() {
  local c s
  c=$1; s=$2; shift 2
  if pb_rollback; then pb_at "rolledback"; else pb_at "rollback-incomplete"; fi
  pb_at "failed $s"
  [ $# -eq 0 ] || printf '%s\n' "$@"
  exit "$c"
}
pb_interrupted() {
  trap '' HUP PIPE TERM INT
  exec >/dev/null 2>&1
  pb_rollback
  exit 17
}
`;

/** The library as it is sent: its comment lines are for readers here, not for the host (they cost bytes, e.g. in the SSM document). */
const LIBRARY_TEXT = LIBRARY.replace(/\\\$\{/g, "${")
  .split("\n")
  .filter((l) => !/^\s*#/.test(l))
  // Nor is its indentation (the library has no here-document or multi-line string).
  .map((l) => l.trimStart())
  .join("\n");

/** Shell that sets the script's fixed variables and loads the library. */
function header(stateDir: string, owner: string, opts: ScriptOptions): string[] {
  if (!/^[0-9a-f]{16,64}$/.test(opts.token)) throw new Error("report token must be 16-64 lowercase hex digits");
  // pb_flush lists records by path, split on blanks: the state directory's path must have none.
  if (!/^\/[A-Za-z0-9_.+@/-]{1,4095}$/.test(stateDir)) {
    throw new Error(`state directory ${JSON.stringify(stateDir)}: must be an absolute path of letters, digits and _ . + @ / -`);
  }
  return [
    `T=${quote(opts.token)}`,
    `S=${quote(stateDir)}`,
    `OWNER=${quote(checkOwner(owner))}`,
    `R=${quote(opts.runDir ?? RUN_DIR)}`,
    `ST=${checkNumber(opts.stepTimeoutSeconds ?? 90, "stepTimeoutSeconds", 3600)}`,
    `LOCKWAIT=${checkNumber(opts.lockWaitSeconds ?? 120, "lockWaitSeconds", 3600)}`,
    `PB_RELISTEN_PL=${quote(RELISTEN_PERL)}`,
    `PB_RELISTEN_PY=${quote(RELISTEN_PYTHON)}`,
    LIBRARY_TEXT,
  ];
}

/**
 * The fixed lines every script starts with (variables and the shell library: `pb_at`, `pb_lock`,
 * `pb_relisten`, `pb_cgroup`, `pb_rollback`, …), for a script that composes its own steps around
 * {@link applyScript} (the standalone script).
 */
export function scriptLibrary(stateDir: string, owner: string, opts: ScriptOptions): string[] {
  return header(stateDir, owner, opts);
}

/**
 * Lines that bring an earlier run cut short back to where it started (an open journal), and move
 * a state directory of the 0.1 layout (`<state>/<owner>/`) into place. Run under the lock.
 */
function recoverLines(legacyName?: string): string[] {
  const legacy = legacyName && OWNER_PATTERN.test(legacyName) && !["orig", "txn", "owners"].includes(legacyName) ? quote(legacyName) : "";
  return [
    "pb_step recover",
    ...(legacy
      ? [
          `L="$S/"${legacy}; if [ ! -d "$S/orig" ] && [ -d "$L/orig" ]; then mv "$L/orig" "$S/orig" && for f in "$L"/applied.* "$L"/own.*; do [ -f "$f" ] && mv "$f" "$S/"; done; rm -rf "$L/prev"; rmdir "$L" 2>/dev/null; fi`,
        ]
      : []),
    `if [ -e "$S/txn/open" ]; then if pb_rollback; then pb_at "recovered"; else pb_at "failed recover"; echo "an earlier run on this host was cut short and could not be rolled back; see $S/txn"; exit 16; fi; elif [ -d "$S/txn" ]; then rm -rf "$S/txn"; fi`,
    // Temp names of records that a killed run wrote but never renamed (pb_note): not records.
    `rm -f "$S"/*.pb-new "$S"/orig/*.pb-new "$S"/owners/*.pb-new`,
  ];
}

/**
 * Shell commands that list the host's sysctl sources for `keys` (dotted): `files` prints every
 * sysctl file (names only: a same-named file in an earlier directory masks a later one, whatever
 * it sets), a link as `PATH -> TARGET` (`readlink -f`; `!unsafe` outside the safe path set);
 * `lines` prints the numbered lines (`PATH:N:TEXT`, as `grep -H -n`) that assign one of `keys`.
 * src/core/sysctlSources.ts decides which line wins under which tool: the probe's report is read by
 * report.ts, the standalone script reads the same output with its awk port. Names outside the safe
 * set are left out; control characters but tab are dropped from lines. Undefined for no keys.
 *
 * @param keys - managed kernel keys, dotted (`net.core.somaxconn`).
 */
export function sysctlListing(keys: readonly string[]): { files: string; lines: string } | undefined {
  const keyPattern = keys.map((k) => k.replace(/\./g, "[./]")).join("|");
  if (!keyPattern) return undefined;
  const globs = SYSCTL_DIRS.map((d) => `${quote(d)}/*.conf`).join(" ");
  const each = `for f in ${globs} /etc/sysctl.conf; do case \${f##*/} in *[!A-Za-z0-9_.+@-]*) continue;; esac; `;
  return {
    files:
      `${each}if [ -L "$f" ]; then t=$(readlink -f -- "$f"); case $t in ''|*[!A-Za-z0-9_.+@/-]*) t='!unsafe';; esac; printf '%s -> %s\\n' "$f" "$t"; ` +
      `elif [ -f "$f" ]; then printf '%s\\n' "$f"; fi; done`,
    // One grep over every file, in the same order (names are checked safe, so the list splits on blanks).
    lines:
      `pb_sl=''; ${each}[ -f "$f" ] && pb_sl="$pb_sl $f"; done; ` +
      `[ -z "$pb_sl" ] || grep -H -n -E ${quote(`^[[:space:]]*-?[[:space:]]*(${keyPattern})[[:space:]]*=`)} $pb_sl /dev/null | tr -d '\\000-\\010\\013-\\037\\177'`,
  };
}

/** Lines that print the current state: kernel values, managed files, sysctl.d, sockets, units, state. */
function observeLines(spec: ProbeSpec): string[] {
  const lines: string[] = [];
  // While an earlier run's journal is open, the values it will give back are what count.
  for (const key of spec.sysctlKeys) {
    const p = quote(procPath(key));
    const kept = `"$S/txn/k/"${quote(key)}`;
    lines.push(
      `pb_at ${quote("sysctl " + key)}; if [ -e "$S/txn/open" ] && [ -f ${kept} ]; then cat ${kept}; elif [ -r ${p} ]; then cat ${p}; else echo '!missing'; fi`,
    );
  }
  for (const path of spec.paths) lines.push(`pb_file ${quote(path)} ${backupName(path)}`);
  if (spec.discoverPhp) {
    for (const f of spec.discoverPhp.poolFiles) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]*\.conf$/.test(f)) throw new Error(`pool file ${JSON.stringify(f)}: must be a file name ending in .conf`);
    }
    lines.push(
      `pb_units=$(for f in /etc/systemd/system/php*-fpm.service /run/systemd/system/php*-fpm.service /usr/lib/systemd/system/php*-fpm.service /lib/systemd/system/php*-fpm.service; do [ -f "$f" ] && { f=\${f##*/}; echo "\${f%.service}"; }; done | grep -E '^php([0-9]+\\.[0-9]+)?-fpm$' | sort -u)`,
      `pb_at php-units; for u in $pb_units; do v=$(systemctl is-active "$u" 2>/dev/null | head -n 1); echo "$u \${v:-unknown}"; done`,
      "for u in $pb_units; do",
      `  case $u in php-fpm) d=/etc/php-fpm.d;; *) v=\${u#php}; d=/etc/php/\${v%-fpm}/fpm/pool.d;; esac`,
      ...spec.discoverPhp.poolFiles.map((f) => `  pb_file "$d/"${quote(f)}`),
      "done",
    );
  }
  const listing = sysctlListing(spec.sysctlKeys);
  if (listing) lines.push(`pb_at sysctl-files; ${listing.files}`, `pb_at sysctl-lines; ${listing.lines}`);
  // Only the sockets the profile names, selected by ss itself: a socket whose name holds a
  // newline or a fake row never matches the exact path filter.
  for (const path of spec.unixPaths) {
    lines.push(`pb_at ${quote("unix " + path)}; ss -H -l -n -x src ${quote(path)}`);
  }
  for (const port of spec.tcpPorts) {
    lines.push(`pb_at ${quote("tcp " + checkNumber(port, "port", 65535))}; ss -H -l -n -t -e ${quote(`sport = :${port}`)} | sed 's/ cgroup:.*//'`);
  }
  lines.push("pb_at container; systemd-detect-virt --container 2>/dev/null || true");
  // One systemctl for every unit: it prints one state a line, in the order asked (none when it
  // cannot run: then each unit reads "unknown", as a unit without a line does).
  if (spec.units.length > 0) {
    const names = spec.units.map((u) => quote(checkUnit(u))).join(" ");
    lines.push(
      `{ ${spec.units.map((u) => `IFS= read -r v || v=''; pb_at ${quote("unit " + u)}; echo "\${v:-unknown}";`).join(" ")} } <<PB_UNITS`,
      `$(systemctl is-active ${names} 2>/dev/null)`,
      "PB_UNITS",
    );
  }
  lines.push(`pb_at before; if [ -d "$S/orig" ]; then cd "$S/orig" && grep -H --exclude='*.pb-new' . sysctl.* 2>/dev/null; cd /; fi`);
  lines.push(`pb_at applied; if [ -d "$S" ]; then cd "$S" && grep -H --exclude='*.pb-new' . applied.* own.* 2>/dev/null; cd /; fi`);
  // Files with a kept original (any owner), then each owner's files.
  // A .path record is one line (pb_note): read, not cat, saves a process per managed file.
  lines.push(`pb_at managed; for f in "$S"/orig/*.path; do [ -f "$f" ] && { IFS= read -r l < "$f" || [ -n "$l" ]; } && printf '%s\\n\\n' "$l"; done`);
  lines.push(`pb_at owners; if [ -d "$S/owners" ]; then cd "$S/owners" && grep -H --exclude='*.pb-new' . * 2>/dev/null; cd /; fi`);
  lines.push(`pb_at journal; if [ -e "$S/txn/open" ]; then echo open; else echo none; fi`);
  // A record is a regular file of one line: \`read\` (a builtin) takes it without a process. Not for
  // /proc/sys: the shell reads a byte at a time, and a sysctl file read at an offset gives nothing.
  lines.push(`pb_at generation; g=''; { read -r g < "$S/generation"; } 2>/dev/null || g=0; case $g in ''|*[!0-9]*) g=0;; esac; echo "$g"`);
  return lines;
}

function wrap(lines: string[]): string {
  // One function, called on the last line: a script cut short in transit defines nothing or is never called.
  return ["pb_main() {", ...lines, "}", "pb_main", ""].join("\n");
}

/** Script that only reads: used before an apply (to learn the host's values) and by refresh (drift). */
/**
 * What to observe on a host that an apply plan manages: its kernel values, files, units and sockets.
 * The apply ends with this observation, and a refresh (`read`) probes the same.
 */
export function observeSpec(
  plan: Pick<ApplyPlan, "stateDir" | "owner" | "sysctlKeys" | "sockets"> & { files: readonly { path: string }[]; services: readonly { unit: string }[] },
): ProbeSpec {
  return {
    stateDir: plan.stateDir,
    owner: plan.owner,
    sysctlKeys: plan.sysctlKeys,
    paths: plan.files.map((f) => f.path),
    units: plan.services.map((s) => s.unit),
    ...plan.sockets,
  };
}

export function probeScript(spec: ProbeSpec, opts: ScriptOptions): string {
  return wrap([...header(spec.stateDir, spec.owner, opts), ...observeLines(spec), "pb_at end"]);
}

/** The sed expressions (as shell words) that fill a file's run-time values, after checking each variable. */
function runtimeLines(f: ManagedFile): { checks: string[]; sedArgs: string } {
  const values = Object.entries(f.runtimeValues ?? {});
  const checks: string[] = [];
  const args: string[] = [];
  values.forEach(([placeholder, variable], i) => {
    if (!/^@[A-Z][A-Z0-9_]*@$/.test(placeholder))
      throw new Error(`runtimeValues of ${f.path}: placeholder ${JSON.stringify(placeholder)} must look like @NAME@ (capitals, digits, _)`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) throw new Error(`runtimeValues of ${f.path}: ${JSON.stringify(variable)} is not a shell variable name`);
    if (!f.content.includes(placeholder)) throw new Error(`runtimeValues of ${f.path}: placeholder ${placeholder} does not occur in the content`);
    checks.push(
      `case \${${variable}-} in *[!0-9]*) pb_fail 13 ${quote("write " + f.path)} ${quote(`${variable} is not a whole number`)};; esac`,
      `if [ -n "\${${variable}-}" ]; then rv${i}="s/${placeholder}/\${${variable}}/g"; else rv${i}='/${placeholder}/d'; fi`,
    );
    args.push(`-e "$rv${i}"`);
  });
  return { checks, sedArgs: args.join(" ") };
}

/** Lines that run a service's action, rolling everything back when it fails. */
function serviceLines(s: ManagedService, timeout: number): string[] {
  const unit = quote(checkUnit(s.unit));
  const lines: string[] = [];
  const seconds = Math.trunc(timeout);
  const restart = (why: string) => [`  pb_service restart ${unit} ${seconds}`, `  pb_at ${quote("did " + s.unit + " restart")} ${why}`];
  const host = s.decidedOnHost;
  if (host) {
    for (const v of [host.action, host.reason, host.pairs, host.olds, host.announce ?? "pb_at"]) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(v)) throw new Error(`decidedOnHost of ${s.unit}: ${JSON.stringify(v)} is not a shell name`);
    }
  }
  const pairs = host
    ? `$${host.pairs}`
    : (s.relisten ?? []).map((r) => `${checkNumber(r.inode, "inode", Number.MAX_SAFE_INTEGER)}=${checkNumber(r.backlog, "backlog")}`).join(" ");
  const olds = host
    ? `"${s.unit} $${host.olds}"`
    : quote(`${s.unit} ${(s.relisten ?? []).map((r) => `${r.inode}=${checkNumber(r.oldBacklog, "oldBacklog")}`).join(" ")}`);
  const relisten = (after: string) => [
    // What the sockets had, so that a rollback can listen() again with the old backlog.
    `  pb_note "$S/txn/s/"${unit} ${olds} || pb_fail 13 ${quote("journal " + s.unit)}`,
    `  if out=$(pb_relisten ${unit} ${pairs} 2>&1); then pb_at ${quote("did " + s.unit + " " + after)}; printf '%s\\n' "$out"; else`,
    `    pb_at ${quote("fallback " + s.unit)}; printf '%s\\n' "$out"`,
    ...(host?.announce ? [`    ${host.announce} ${unit} "restart (fallback: $(printf '%s\\n' "$out" | head -n 1))"`] : []),
    ...restart("'(fallback)'").map((l) => "  " + l),
    "  fi",
  ];
  lines.push(`pb_step ${quote("service " + s.unit)}`);
  if (host) {
    const reload = [`  pb_service reload ${unit} ${seconds}`, `  pb_at ${quote("did " + s.unit + " reload")}`];
    lines.push(
      `case $${host.action} in`,
      "restart)",
      ...restart(`"$${host.reason}"`),
      "  ;;",
      "reload)",
      ...reload,
      `  if [ -n "${pairs}" ]; then`,
      ...relisten("relisten").map((l) => "  " + l),
      "  fi;;",
      `relisten) if [ -n "${pairs}" ]; then`,
      ...relisten("relisten").map((l) => "  " + l),
      "  fi;;",
      "esac",
    );
  } else if (s.action === "restart") {
    lines.push("if :; then", ...restart(""), "fi");
  } else if (s.action === "reload") {
    lines.push(`pb_service reload ${unit} ${seconds}`, `pb_at ${quote("did " + s.unit + " reload")}`);
    if (pairs) lines.push("if :; then", ...relisten("relisten"), "fi");
  } else if (s.action === "relisten" && pairs) {
    lines.push("if :; then", ...relisten("relisten"), "fi");
  }
  return lines;
}

/**
 * Script that applies a plan in one SSH session, as one transaction:
 * 1. take the host's lock; roll back an earlier run that was cut short;
 * 2. check that no port the new configuration listens on is held by a foreign process;
 * 3. open the journal; keep each original once (first deploy) and each current file and value (for rollback);
 * 4. write each file (temp, checked, flushed, renamed); give back retired files; record the owner's files;
 * 5. test each service's whole configuration (exit 10);
 * 6. `sysctl -p` the drop-in (exit 11);
 * 7. per service: relisten, reload or restart (exit 12, with a fallback from relisten to restart);
 * 8. after a reload or restart, wait until the units listen on each of the profile's sockets
 *    ({@link LISTEN_WAIT_SECONDS}; exit 12): a reload is asynchronous;
 * 9. close the journal, then print what the host has now, for verification (kernel values,
 *    sockets, units and records; not the files, each checked against its hash before its rename).
 * Any failure from step 3 on puts back everything the journal recorded.
 */
export function applyScript(plan: ApplyPlan, opts: ScriptOptions): string {
  const timeout = opts.stepTimeoutSeconds ?? 90;
  const lines = [
    ...header(plan.stateDir, plan.owner, opts),
    "pb_step lock",
    "pb_lock",
    ...recoverLines(plan.legacyName),
    "trap pb_interrupted HUP PIPE TERM INT",
    `PB_GEN=''; { read -r PB_GEN < "$S/generation"; } 2>/dev/null || PB_GEN=0; case $PB_GEN in ''|*[!0-9]*) PB_GEN=0;; esac`,
    ...(plan.generation !== undefined
      ? [
          `if [ "$PB_GEN" != ${checkNumber(plan.generation, "generation", Number.MAX_SAFE_INTEGER)} ]; then pb_at "failed changed"; echo "another run changed this host after this run's probe (state generation $PB_GEN, probed ${plan.generation}); nothing was done: run pulumi up again"; exit 19; fi`,
        ]
      : []),
    "pb_step ports",
  ];
  const units = plan.services.map((s) => quote(checkUnit(s.unit))).join(" ");
  if (units) lines.push(`pb_cg_warm ${units}`);
  for (const s of plan.services) {
    for (const port of s.ports ?? []) {
      lines.push(
        `if ! out=$(pb_port_free ${checkNumber(port, "port", 65535)} ${units}); then pb_at ${quote("failed port " + port)}; printf '%s\\n' "$out"; exit 15; fi`,
      );
    }
  }
  lines.push(
    "pb_step journal",
    `mkdir -p "$S/orig" "$S/owners" && chmod 700 "$S" || { pb_at "failed state"; echo "cannot create $S"; exit 13; }`,
    `mkdir -p "$S/txn/f" "$S/txn/k" "$S/txn/u" "$S/txn/s" && pb_note "$S/txn/open" "$OWNER" || pb_fail 13 journal "cannot write the journal in $S/txn"`,
    "PB_CHANGED=''",
  );
  for (const key of plan.sysctlKeys) {
    const name = quote("sysctl." + key);
    lines.push(`[ -f "$S/orig/"${name} ] || { v=$(cat ${quote(procPath(key))}) && pb_note "$S/orig/"${name} "$v"; } || pb_fail 13 ${quote("keep " + key)}`);
  }
  for (const f of plan.files) {
    const b = backupName(f.path);
    const { checks, sedArgs } = runtimeLines(f);
    if (!/^[0-7]{3,4}$/.test(f.mode)) throw new Error(`mode of ${f.path} ${JSON.stringify(f.mode)}: must be octal permission bits`);
    lines.push(
      `pb_step ${quote("write " + b)}`,
      ...checks,
      `pb_put ${quote(f.path)} ${b} ${quote(f.mode)} ${quote(f.owner + ":" + f.group)} ${contentHash(f.content)}${sedArgs ? " " + sedArgs : ""} <<'PULUMI_BACKLOG_B64' || pb_fail 13 ${quote("write " + f.path)} "could not write the file (disk full, or read-only?)"`,
      Buffer.from(f.content, "utf8")
        .toString("base64")
        .replace(/(.{76})/g, "$1\n")
        .replace(/\n$/, ""),
      "PULUMI_BACKLOG_B64",
    );
  }
  for (const n of plan.neutralize ?? []) {
    if (!/^\/[A-Za-z0-9_.+/-]{1,4095}$/.test(n.path)) throw new Error(`neutralize ${JSON.stringify(n.path)}: not a sysctl file path`);
    const pairs = n.lines
      .map((l) => {
        if (/[\n\r]/.test(l.text)) throw new Error(`neutralize ${n.path}:${l.line}: the line text holds a line break`);
        return `${checkNumber(l.line, "line", 999999999)} ${quote(l.text)}`;
      })
      .join(" ");
    lines.push(
      `pb_step ${quote("neutralize " + n.path)}`,
      `PB_NEUTRAL=${quote(NEUTRALIZED_PREFIX)}`,
      `out=$(pb_neutralize ${quote(n.path)} ${backupName(n.path)} ${pairs}); rc=$?; if [ "$rc" != 0 ]; then pb_fail $([ "$rc" = 19 ] && echo 19 || echo 13) ${quote("neutralize " + n.path)} "$out"; fi`,
      `pb_at ${quote("neutralized " + n.path)}`,
    );
  }
  const onHost = plan.neutralizeOnHost;
  if (onHost) {
    lines.push(
      `pb_step ${quote("neutralize on host")}`,
      `PB_NEUTRAL=${quote(NEUTRALIZED_PREFIX)}`,
      `pb_nl=$(${onHost.list}) || pb_fail 13 ${quote("neutralize")} "could not list the conflicting sysctl lines"`,
      "while IFS=$(printf '\\t') read -r np nn nt; do",
      `  [ -n "$np" ] || continue`,
      `  b=$(printf '%s' "$np" | sha256sum | cut -c1-16)`,
      `  out=$(pb_neutralize "$np" "$b" "$nn" "$nt"); rc=$?; if [ "$rc" != 0 ]; then pb_fail $([ "$rc" = 19 ] && echo 19 || echo 13) "neutralize $np" "$out"; fi`,
      `  pb_at "neutralized $np"`,
      `  printf '%s\\n' "$np" >> "$S/txn/neutralized" || pb_fail 13 "journal" "cannot write $S/txn/neutralized"`,
      "done <<PB_NEUTRALIZE",
      "$pb_nl",
      "PB_NEUTRALIZE",
    );
  }
  for (const path of plan.retired ?? []) {
    lines.push(`pb_give_back ${quote(path)} ${backupName(path)} || pb_fail 13 ${quote("give back " + path)}`);
  }
  if (plan.retireStale) {
    const current = plan.files.map((f) => f.path).join("\n");
    lines.push(
      `if [ -f "$S/owners/$OWNER" ]; then`,
      `  others=$(for o in "$S"/owners/*; do [ -f "$o" ] && [ "$o" != "$S/owners/$OWNER" ] && cat "$o" && echo; done)`,
      "  while IFS= read -r p; do",
      `    [ -n "$p" ] || continue`,
      `    printf '%s\\n' ${quote(current)} | grep -qxF -- "$p" && continue`,
      `    printf '%s\\n' "$others" | grep -qxF -- "$p" && continue`,
      // A sysctl file this owner neutralized stays its own while it neutralizes (decided on the host).
      ...(onHost ? [`    case $p in ${onHost.sourcePattern}) printf '%s\\n' "$p" >> "$S/txn/neutralized"; continue;; esac`] : []),
      `    b=$(printf '%s' "$p" | sha256sum | cut -c1-16)`,
      `    pb_give_back "$p" "$b" || pb_fail 13 "give back $p"`,
      `    pb_at "retired $p"`,
      `  done < "$S/owners/$OWNER"`,
      "fi",
    );
  }
  const ownerList = [...plan.files.map((f) => f.path), ...new Set([...(plan.neutralize ?? []).map((n) => n.path), ...(plan.neutralized ?? [])])].join("\n");
  lines.push(
    // Files neutralized on the host join the record (each once, not twice with the list above).
    ...(onHost
      ? [
          `PB_OWNED=$(printf '%s\\n' ${quote(ownerList)}; [ ! -f "$S/txn/neutralized" ] || sort -u "$S/txn/neutralized" | grep -vxF -e ${quote(ownerList)})`,
          `pb_txn_keep "$S/owners/$OWNER" owner && pb_note "$S/owners/$OWNER" "$PB_OWNED" || pb_fail 13 "owner" "cannot record this deployment's files"`,
        ]
      : [
          `pb_txn_keep "$S/owners/$OWNER" owner && pb_note "$S/owners/$OWNER" ${quote(ownerList)} || pb_fail 13 "owner" "cannot record this deployment's files"`,
        ]),
    "pb_step test",
  );
  for (const s of plan.services) {
    lines.push(`if ! out=$(timeout -k 5 ${timeout} ${s.test.map(quote).join(" ")} 2>&1); then pb_fail 10 ${quote("test " + s.unit)} "$out"; fi`);
  }
  if (plan.sysctlFile) {
    lines.push("pb_step sysctl");
    for (const key of plan.sysctlKeys) {
      lines.push(
        `[ -f "$S/txn/k/"${quote(key)} ] || { v=$(cat ${quote(procPath(key))}) && pb_note "$S/txn/k/"${quote(key)} "$v"; } || pb_fail 13 ${quote("keep " + key)}`,
      );
    }
    lines.push(`if ! out=$(sysctl -p ${quote(plan.sysctlFile)} 2>&1); then pb_fail 11 sysctl "$out"; fi`);
    // What this deploy set: a later value that differs was set by someone else (see converge.ts).
    for (const key of plan.sysctlKeys) {
      const applied = `"$S/"${quote("applied." + key)}`;
      lines.push(
        `pb_txn_keep ${applied} ${quote("applied." + key)} && v=$(cat ${quote(procPath(key))}) && pb_note ${applied} "$v" || pb_fail 13 ${quote("record " + key)}`,
      );
      const own = plan.hostOwn?.[key];
      if (own !== undefined) {
        const file = `"$S/"${quote("own." + key)}`;
        lines.push(`pb_txn_keep ${file} ${quote("own." + key)} && pb_note ${file} ${quote(String(Math.trunc(own)))} || pb_fail 13 ${quote("record " + key)}`);
      }
    }
  }
  lines.push(...(plan.beforeServices ?? []));
  for (const s of plan.services) lines.push(...serviceLines(s, timeout));
  // A reload returns before the service has loaded the files: what it cannot open shows now, while
  // the journal can still put everything back (a restart waits for the service, the check is cheap).
  const sockets = [...plan.sockets.unixPaths.map((p) => quote(p)), "--", ...plan.sockets.tcpPorts.map((p) => String(checkNumber(p, "port", 65535)))];
  if (sockets.length > 1 && plan.services.some((s) => s.decidedOnHost || s.action === "reload" || s.action === "restart")) {
    lines.push(
      "pb_step listening",
      `if ! out=$(pb_listening ${Math.min(LISTEN_WAIT_SECONDS, Math.trunc(timeout))} ${units} -- ${sockets.join(" ")}); then pb_fail 12 listening "$out"; fi`,
    );
  }
  lines.push(
    "pb_step commit",
    // The new records (owner, applied values, generation) on disk before the journal goes.
    `pb_note "$S/generation" "$((PB_GEN + 1))" && pb_flush || pb_fail 13 commit "cannot write $S/generation"`,
    `rm -f "$S/txn/open"; rm -rf "$S/txn"`,
    "trap - HUP PIPE TERM INT",
    "pb_at changed $PB_CHANGED",
    // What the verification reads: not the files, written and checked just now (3 processes each).
    ...observeLines({ ...observeSpec(plan), paths: [] }),
    "pb_at end",
  );
  return wrap(lines);
}

/** What a restore gives back. */
export interface RestorePlan {
  stateDir: string;
  /** See {@link ApplyPlan.legacyName}. */
  legacyName?: string;
  owner: string;
  /** The files this owner managed (used when the host has no owner record, from the 0.1 layout). */
  paths: string[];
  sysctlKeys: string[];
  services: Pick<ManagedService, "unit">[];
}

/**
 * Script that gives the host back. This owner's entry goes; each file no other owner still manages
 * is restored from its original (or removed when there was none); when no owner is left, each
 * kernel value is set back too, the services restart so their sockets listen with the old values,
 * and the state directory goes, but only once every step succeeded (exit 18 keeps it).
 */
export function restoreScript(plan: RestorePlan, opts: ScriptOptions): string {
  const timeout = opts.stepTimeoutSeconds ?? 90;
  const lines = [...header(plan.stateDir, plan.owner, opts), "pb_step lock", "pb_lock", ...recoverLines(plan.legacyName), "trap '' HUP PIPE", "rc=0"];
  const fallback = plan.paths.join("\n");
  lines.push(
    "pb_step restore",
    `if [ -f "$S/owners/$OWNER" ]; then mine=$(cat "$S/owners/$OWNER"); elif [ -d "$S/owners" ] && [ -n "$(ls -A "$S/owners")" ]; then mine=''; else mine=${quote(fallback)}; fi`,
    `others=$(for o in "$S"/owners/*; do [ -f "$o" ] && [ "$o" != "$S/owners/$OWNER" ] && cat "$o" && echo; done)`,
    "restored=''",
    "while IFS= read -r p; do",
    `  [ -n "$p" ] || continue`,
    `  printf '%s\\n' "$others" | grep -qxF -- "$p" && continue`,
    `  b=$(printf '%s' "$p" | sha256sum | cut -c1-16)`,
    `  if [ -f "$S/orig/$b.absent" ]; then rm -f "$p" || { rc=18; break; }`,
    `  elif [ -f "$S/orig/$b.file" ]; then pb_copy "$S/orig/$b.file" "$p" || { rc=18; break; }`,
    `  else pb_at "warning no original kept for $p"; continue; fi`,
    "  restored=1",
    "done <<PB_MINE",
    "$mine",
    "PB_MINE",
    `[ "$rc" = 0 ] || { pb_at "failed restore files"; echo "could not give back every file (disk full?); the originals stay in $S"; }`,
    `if [ -n "$others" ]; then`,
    `  pb_at "warning shared with other owners: kernel values left as they are"`,
    ...plan.services.map(
      (s) =>
        `  if [ -n "$restored" ] && ! out=$(${serviceAction("restart", s.unit, timeout)} 2>&1); then pb_at ${quote("failed restart " + s.unit)}; printf '%s\\n' "$out"; rc=18; fi`,
    ),
    `  [ "$rc" = 0 ] && rm -f "$S/owners/$OWNER"`,
    "else",
  );
  for (const key of plan.sysctlKeys) {
    const name = quote("sysctl." + key);
    lines.push(
      `  if [ -f "$S/orig/"${name} ]; then cat "$S/orig/"${name} > ${quote(procPath(key))} || { pb_at ${quote("failed restore " + key)}; rc=18; }; fi`,
    );
  }
  for (const s of plan.services) {
    lines.push(
      `  if ! out=$(${serviceAction("restart", s.unit, timeout)} 2>&1); then pb_at ${quote("failed restart " + s.unit)}; printf '%s\\n' "$out"; rc=18; fi`,
    );
  }
  lines.push(`  [ "$rc" = 0 ] && rm -rf "$S"`, "fi");
  lines.push(
    ...observeLines({
      stateDir: plan.stateDir,
      owner: plan.owner,
      sysctlKeys: plan.sysctlKeys,
      paths: plan.paths,
      units: plan.services.map((s) => s.unit),
      unixPaths: [],
      tcpPorts: [],
    }),
  );
  lines.push("pb_at end", `exit "$rc"`);
  return wrap(lines);
}
