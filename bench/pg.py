"""A throwaway PostgreSQL cluster in a temp dir, for benchmarks (as .ci/run does for tests)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PORT = 56150  # the benchmarks' PostgreSQL port (bench ports are 56100-56199)
FALLBACK_PORTS = range(56151, 56200)  # when another benchmark's cluster holds it


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ThrowawayPostgres:
    """initdb + pg_ctl start on loopback; ``stop()`` removes everything."""

    def __init__(self, port: int | None = None, settings: tuple[str, ...] = ()):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
        self.bin = bins[-1]
        free = [p for p in ([port] if port else [PORT, *FALLBACK_PORTS]) if not _port_taken(p)]
        if not free:
            raise RuntimeError(f"no free PostgreSQL port (tried {port or f'{PORT}-{FALLBACK_PORTS[-1]}'})")
        self.port = free[0]
        self.dir = tempfile.mkdtemp(prefix="flowdesk-bench-pg-")
        self.settings = settings  # extra "-c name=value" server settings

    def _as_pg(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> str:
        """Start the cluster and return a database URL."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._as_pg(f"{self.bin}/initdb", "-D", self.dir, "-U", "flowdesk", "--auth=trust", "-E", "UTF8")
        options = [f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
                   *(f"-c {s}" for s in self.settings)]
        try:
            self._as_pg(f"{self.bin}/pg_ctl", "-D", self.dir, "-l", f"{self.dir}/log", "-w", "-t", "180", "-o",
                        " ".join(options), "start")
        except subprocess.CalledProcessError:
            log = Path(self.dir, "log")
            tail = log.read_text()[-1500:] if log.exists() else "no log"
            raise RuntimeError(f"PostgreSQL did not start: {tail}") from None
        subprocess.run([f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "flowdesk",
                        "flowdesk_bench"], check=True)
        return f"postgresql://flowdesk@127.0.0.1:{self.port}/flowdesk_bench"

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_pg(f"{self.bin}/pg_ctl", "-D", self.dir, "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
