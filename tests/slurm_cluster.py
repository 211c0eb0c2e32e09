"""A real single-node SLURM cluster in a temp folder, for tests/test_slurm.py and for trying
`hydra/launcher=slurm` by hand (docs/cluster.md).

It runs the daemons of a real cluster from Debian's packages (slurm-wlm, slurmdbd, munge,
mariadb-server-core), each from its own config in one folder, on ports of its own, as root:

    munged      authentication (a fresh key in the folder)
    mariadbd    the accounting database (a Unix socket in the folder, no network, no grant tables)
    slurmdbd    accounting: `sacct` is how submitit learns that a job ended without a result (cancelled,
                timed out, killed); without it a cancelled job leaves the launcher waiting forever
    slurmctld   the controller: one partition, `cpu`, with a short MaxTime
    slurmd      the one node, with this machine's CPUs and memory (`slurmd -C`)

proctrack/linuxproc, task/none and no cgroups, so it runs in a container. The fixture `slurm_cluster`
skips when a binary is missing or not root, unless STILTS_REQUIRE_SLURM is set (.ci/run sets it after
installing them): then it fails, so CI never skips the SLURM tests silently.

By hand:  python -m tests.slurm_cluster up /tmp/stilts-slurm     (prints the SLURM_CONF to export)
          python -m tests.slurm_cluster down /tmp/stilts-slurm
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REQUIRE_ENV = "STILTS_REQUIRE_SLURM"
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server-core"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sacct", "scancel", "sinfo")
PARTITION = "cpu"
MAX_TIME_MIN = 30          # the partition's MaxTime: no test job runs longer than this
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


def binary(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def unavailable() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    missing = [b for b in (*DAEMONS, *CLIENTS) if binary(b) is None]
    if missing:
        return (f"SLURM test cluster: {', '.join(missing)} not installed "
                f"(apt-get install --no-install-recommends {PACKAGES})")
    if os.geteuid() != 0:
        return "SLURM test cluster: slurmd and slurmctld run as root here; run the tests as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_facts() -> dict[str, str]:
    """`slurmd -C`: this machine's node line (NodeName, CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run([binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))


def select_type() -> str:
    """select/cons_tres from Slurm 19.05 on (cons_res is gone in 23.11), select/cons_res before."""
    out = subprocess.run([binary("slurmctld"), "-V"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    return "select/cons_tres" if m is None or (int(m[1]), int(m[2])) >= (19, 5) else "select/cons_res"


class SlurmCluster:
    """The daemons' configs, state, logs and pid files all live under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.db_socket = self.root / "db" / "mysqld.sock"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=SEARCH_PATH)
        self.node = "localhost"
        self.dbd_port = 0
        self._procs: list[subprocess.Popen] = []   # the daemons this object started (not `down`'s)

    # ---- configuration -------------------------------------------------------------------------
    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "db/data", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        facts = node_facts()
        self.node = facts["NodeName"]
        ctld, slurmd, dbd = free_port(), free_port(), free_port()
        self.dbd_port = dbd
        hw = " ".join(f"{k}={facts[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                   "ThreadsPerCore", "RealMemory") if k in facts)
        self.conf.write_text(f"""\
# A single-node SLURM cluster (tests/slurm_cluster.py): this machine, one partition, as root.
ClusterName=stilts
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
# no cgroups: runs in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
# accounting through slurmdbd, so that sacct (which submitit polls) knows how every job ended
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd}
# the munge socket for talking to slurmdbd (AuthInfo covers only the controller and the node)
AccountingStoragePass={self.munge_socket}
SelectType={select_type()}
SelectTypeParameters=CR_Core_Memory
# a job asking for more than the partition's MaxTime is refused at submission, not left pending
EnforcePartLimits=ALL
ReturnToService=2
# seconds between SIGTERM and SIGKILL for a cancelled or timed-out job
KillWait=5
MinJobAge=300
NodeName={self.node} NodeAddr=127.0.0.1 {hw} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime={MAX_TIME_MIN} State=UP
""")
        dbd_conf = r / "slurmdbd.conf"   # beside slurm.conf, where slurmdbd looks; 0600, as it demands
        dbd_conf.write_text(f"""\
DbdHost=localhost
DbdPort={dbd}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
PidFile={r}/slurmdbd.pid
LogFile={r}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
""")
        dbd_conf.chmod(0o600)

    # ---- daemons -------------------------------------------------------------------------------
    def _start(self, name: str, args: list[str], env: dict | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self._procs.append(subprocess.Popen([binary(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env or self.env, start_new_session=True,
                                            cwd=self.root))
        log.close()

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not ready():
            if time.time() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                                 for p in sorted((self.root / "log").glob("*")))
                raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout:.0f} s\n{logs}")
            time.sleep(0.2)

    def start(self) -> "SlurmCluster":
        r = self.root
        self._start("munged", ["--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={r}/munge/munge.key", f"--pid-file={r}/munge/munged.pid",
                               f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed"])
        self._wait("munged", self.munge_socket.exists)
        self._start("mariadbd", ["--no-defaults", "--user=root", f"--datadir={r}/db/data",
                                 f"--socket={self.db_socket}", f"--pid-file={r}/db/mysqld.pid",
                                 "--skip-networking", "--skip-grant-tables", "--innodb-buffer-pool-size=32M",
                                 f"--log-error={r}/log/mariadbd.log"])
        self._wait("mariadbd", lambda: self.db_socket.exists() and "ready for connections" in
                   self._read("log/mariadbd.log"))
        # the MySQL client library in slurmdbd finds the server's socket through MYSQL_UNIX_PORT
        self._start("slurmdbd", ["-D"], env=dict(self.env, MYSQL_UNIX_PORT=str(self.db_socket)))
        self._wait("slurmdbd", lambda: _listening(self.dbd_port))
        self._start("slurmctld", ["-D", "-i"])
        self._wait("slurmctld", lambda: self.run("sinfo", check=False).returncode == 0)
        self._start("slurmd", ["-D", "-N", self.node])
        self._wait("the node", lambda: self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
                   == "idle")
        return self

    def _read(self, rel: str) -> str:
        p = self.root / rel
        return p.read_text(errors="replace") if p.exists() else ""

    def pids(self) -> dict[str, int]:
        files = {"slurmd": "slurmd.pid", "slurmctld": "slurmctld.pid", "slurmdbd": "slurmdbd.pid",
                 "mariadbd": "db/mysqld.pid", "munged": "munge/munged.pid"}
        found = {}
        for name, rel in files.items():
            text = self._read(rel).strip()
            if text.isdigit():
                found[name] = int(text)
        return found

    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, wait for the queue to drain, then stop the daemons, last started first."""
        if self.run("squeue", "-h", check=False).stdout.strip():
            self.run("scancel", "--partition", PARTITION, check=False)
            self.wait_for_empty_queue(timeout, check=False)
        pids = self.pids()
        for name in reversed(DAEMONS):
            pid = pids.get(name)
            if pid is None or not _alive(pid, name):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + timeout
            while _alive(pid, name) and time.time() < deadline:
                time.sleep(0.1)
            if _alive(pid, name):
                os.kill(pid, signal.SIGKILL)
        for proc in self._procs:  # reap them (a daemon that wrote no pid file is stopped here)
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- clients -------------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([binary(cmd[0]) or cmd[0], *cmd[1:]], env=self.env, capture_output=True, text=True,
                              check=check, timeout=60)

    def queue(self) -> dict[str, str]:
        """squeue: job id (array tasks as <job>_<index>) -> state (PENDING, RUNNING, COMPLETING...)."""
        out = self.run("squeue", "-h", "-o", "%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_for_empty_queue(self, timeout: float = 300, check: bool = True) -> None:
        deadline = time.time() + timeout
        while self.run("squeue", "-h", check=False).stdout.strip():
            if time.time() > deadline:
                if check:
                    raise AssertionError(f"jobs still queued after {timeout:.0f} s: {self.queue()}")
                return
            time.sleep(0.5)

    def accounting(self, job: str, timeout: float = 120) -> dict[str, str]:
        """sacct, once every task of `job` has ended: job (array tasks as <job>_<index>, no steps) -> its
        final state (COMPLETED, CANCELLED, TIMEOUT, FAILED...). A launcher returns when the results are
        written, a moment before SLURM has closed the jobs."""
        deadline = time.time() + timeout
        while True:
            out = self.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job).stdout
            states = {jid: state.split()[0] for jid, state in (line.split("|") for line in out.splitlines() if line)}
            if states and not set(states.values()) & {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED"}:
                return states
            if time.time() > deadline:
                raise AssertionError(f"job {job} not ended after {timeout:.0f} s: {states}")
            time.sleep(0.5)


def _alive(pid: int, name: str) -> bool:
    """pid is running and is still `name` (a pid file can outlive its process)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Debian runs slurmd and slurmctld as slurmd-wlm and slurmctld-wlm
    return stat.split(") ")[-1][:1] != "Z" and (comm.startswith(name) or name.startswith(comm))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node cluster for the whole session; its `env` (SLURM_CONF set) goes to every
    command that should talk to it. Nothing of os.environ changes."""
    reason = unavailable()
    if reason:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason}, and {REQUIRE_ENV} is set (CI installs them: .ci/run)")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="stilts-slurm-"))  # short: Unix socket paths have a 107-byte cap
    cluster = SlurmCluster(root)
    try:
        cluster.write_config()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__.split("By hand:")[1], file=sys.stderr)
        return 2
    cluster = SlurmCluster(Path(argv[1]))
    if argv[0] == "down":
        cluster.stop()
        return 0
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    if cluster.conf.exists():
        print(f"error: {cluster.conf} exists: `down` it first, or pick another folder", file=sys.stderr)
        return 1
    cluster.root.mkdir(parents=True, exist_ok=True)
    cluster.write_config()
    cluster.start()
    print(cluster.run("sinfo").stdout, end="")
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
