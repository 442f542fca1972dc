"""A throwaway PostgreSQL server on 127.0.0.1 for the multi-process end-to-end legs.

Airflow supports SQLite for one writer; a scheduler, an API server, workers and triggerers writing
at once need a real database. This starts Debian's PostgreSQL from its binaries in a temporary data
directory (no system cluster, no service manager), tuned for tests (no fsync), and removes it all on
``stop``. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user the Debian
package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.airflow_stack import free_port

USER = "airflow"


def find_bin_dir() -> Path:
    """Where ``initdb`` and ``postgres`` live: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not candidates:
        raise RuntimeError(
            "PostgreSQL is not installed: run scripts/ensure_services.sh (as root it installs Debian's "
            "postgresql package) or install it yourself."
        )
    return Path(candidates[-1]).parent


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


class PostgresServer:
    """``start()`` returns once the server accepts connections; ``url(db)`` is what Airflow takes."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="hubexport-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self._run_as = _unprivileged_user()

    def _cmd(self, name: str, *args: str) -> list[str]:
        cmd = [str(self.bin / name), *args]
        if self._run_as is not None:
            cmd = [
                "setpriv",
                f"--reuid={self._run_as.pw_uid}",
                f"--regid={self._run_as.pw_gid}",
                "--clear-groups",
                *cmd,
            ]
        return cmd

    def start(self, timeout: float = 60) -> PostgresServer:
        if self._run_as is not None:
            os.chmod(self.root, 0o755)
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        subprocess.run(
            self._cmd("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"),
            check=True,
            capture_output=True,
            cwd=self.root,
        )
        log = open(self.log, "ab")  # noqa: SIM115 (closed right after the child has it)
        if self._run_as is not None:
            os.chown(self.log, self._run_as.pw_uid, self._run_as.pw_gid)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "400",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
        }
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        self.proc = subprocess.Popen(
            self._cmd("postgres", "-D", str(self.data), *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return self
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{self.port}:\n{tail}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        result = subprocess.run(
            [
                str(self.bin / "pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                "postgres",
            ],
            capture_output=True,
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """A fresh database for one Airflow stack; returns its SQLAlchemy URL."""
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown, then SIGKILL if it lingers; the data directory goes with it."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, but there is no 'postgres' user to run PostgreSQL as") from None
