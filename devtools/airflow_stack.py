"""Airflow 3 as users run it: API server, scheduler, DAG processor and triggerer as separate
processes, for ``make airflow`` and the end-to-end tests.

Every component runs in its own process group, so stopping one stops its children too (the
scheduler's LocalExecutor workers, a Celery worker's pool). Airflow 3.3's processes do not always
stop on SIGINT, so ``stop`` escalates to SIGTERM and SIGKILL, and leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Seen on CI with every leg of `make test` running: a REST call unanswered after 30 s.
API_TIMEOUT = 120
API_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowStack:
    """The components as separate processes on one AIRFLOW_HOME. ``database_url`` (a PostgreSQL
    URL for several writers) replaces the embedded SQLite default."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        api_port: int | None = None,
        executor: str = "LocalExecutor",
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.api_port = api_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            # Local development only: every visitor is an admin, no login.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            **({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url} if database_url else {}),
            **(env or {}),
        }
        self.processes: dict[str, list[subprocess.Popen]] = {}
        self.logs = self.home / "component-logs"

    # -- processes -------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def prepare(self) -> None:
        """Create airflow.cfg and the database once, before any component starts (they share the
        JWT secret written there)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.airflow("db", "migrate")

    def start(self, name: str, *args: str) -> subprocess.Popen:
        n = len(self.processes.get(name, []))
        log = open(self.logs / f"{name}-{n}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", name, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.setdefault(name, []).append(proc)
        return proc

    def start_all(self, components: tuple[str, ...] = COMPONENTS) -> None:
        for name in components:
            self.start(name)

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            proc.wait(30)

    def stop(self) -> None:
        """SIGINT to every group, then SIGTERM, then SIGKILL: nothing is left running."""
        live = [p for procs in self.processes.values() for p in procs]
        for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for proc in live:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_group_alive(p.pid) for p in live):
                time.sleep(0.1)
            if not any(_group_alive(p.pid) for p in live):
                break
        for proc in live:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> AirflowStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """One REST call. The API server is one process that also serves every task's Execution
        API calls, so on a loaded machine an answer can take long: a generous timeout, and a call
        that timed out is sent again (callers send only idempotent calls, see ``trigger``).
        Statuses in ``ok`` are answers, not errors."""
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                response = requests.request(
                    method, f"{self.base_url}/api/v2{path}", timeout=API_TIMEOUT, **kwargs
                )
                break
            except (requests.ConnectionError, requests.Timeout):
                if attempt == API_ATTEMPTS:
                    raise
                time.sleep(1)
        if response.status_code >= 400 and response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except (requests.RequestException, RuntimeError, KeyError, ValueError) as err:
                last_error = err
            time.sleep(every)
        raise TimeoutError(
            f"{what}: not within {timeout:.0f} s (last error: {last_error}); logs in {self.logs}"
        )

    def wait_healthy(
        self, timeout: float = 180, components: tuple[str, ...] = ("scheduler", "triggerer", "dag_processor")
    ) -> float:
        started = time.monotonic()

        def healthy() -> bool:
            health = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            return all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", *components))

        self.wait_until("Airflow healthy", healthy, timeout)
        return time.monotonic() - started

    def unpause(self, dag_id: str, timeout: float = 120) -> None:
        self.wait_until(f"DAG {dag_id} parsed", lambda: self.api("GET", f"/dags/{dag_id}"), timeout)
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A new run, named here so that sending the request again after a timeout cannot create
        a second run (the answer is then 409: the first request created it)."""
        run_id = f"e2e__{uuid.uuid4().hex}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        self.api("POST", f"/dags/{dag_id}/dagRuns", json=body, ok=(409,))
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        on_poll: Callable[[dict[str, str | None]], None] | None = None,
    ) -> tuple[str, dict[str, set[str]]]:
        """Wait for a run to finish; return its state and every state each task was seen in."""
        seen: dict[str, set[str]] = {}

        def finished() -> str | None:
            states = self.task_states(dag_id, run_id)
            for task, state in states.items():
                seen.setdefault(task, set()).add(str(state))
            if on_poll:
                on_poll(states)
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return self.wait_until(f"run {run_id} of {dag_id}", finished, timeout, every=1.0), seen

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task try's log as the UI shows it (one JSON line per event)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.api("GET", path, params={"full_content": "true"})["content"]
        return "\n".join(json.dumps(line) if not isinstance(line, str) else line for line in content)

    def failure_report(self, dag_id: str, run_ids: list[str], *, runs: int = 2, lines: int = 30) -> str:
        """Why runs failed: each task's state and the end of its log, for the first few failed runs
        (an assertion on counts alone says nothing a CI reader can act on)."""
        report = []
        for run_id in [r for r in run_ids if self.run_state(dag_id, r) == "failed"][:runs]:
            tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            for ti in tis:
                try:
                    text = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"]).splitlines()
                except Exception as err:  # noqa: BLE001 - the report must not hide the failure
                    text = [f"(no log: {err})"]
                report.append(f"--- {run_id} {ti['task_id']} {ti['state']} try {ti['try_number']}")
                report += text[-lines:]
        return "\n".join(report)

    def log_of(self, name: str) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob(f"{name}-*.log")))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose only members are zombies is as good as gone.
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def start_redis(port: int, log_dir: Path) -> subprocess.Popen:
    """A throwaway Redis on loopback for the Celery broker: no persistence, its own process group."""
    log = open(log_dir / "redis.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}; see {log_dir / 'redis.log'}")
