"""Run a DAG with ``dag.test()`` and read back what happened, as a user's DAG file would run.

Airflow 3.3's ``dag.test()`` needs the DAG in a file of the DAG bundle, so each run writes its
source to the test DAGs folder, imports it from there and removes it afterwards.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pluggy
from conftest import DAGS_DIR


@dataclass
class RunResult:
    state: str
    tasks: dict[str, str]
    xcom: dict[str, Any] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    # task id -> the exception its last failed try raised (a state alone would pass on a TypeError)
    errors: dict[str, BaseException] = field(default_factory=dict)
    # task id -> how many times it started running: a try resumed after a deferral (or a
    # reschedule) runs again without a new try number
    runs: dict[str, int] = field(default_factory=dict)
    # task id -> {key: value} of its XComs under other keys than return_value
    keyed: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_dag(
    dag_id: str, source: str, *, raw: bool = False, test_kwargs: dict | None = None, **params: Any
) -> RunResult:
    """``source`` is the body of a DAG file; ``{name}`` placeholders get ``repr(params[name])``
    (``raw=True``: the source is a real DAG file, used as it is)."""
    if raw:
        code = source
    else:
        code = textwrap.dedent(source).format(**{k: repr(v) for k, v in params.items()}, dag_id=repr(dag_id))
    path = os.path.join(DAGS_DIR, f"{dag_id}.py")
    with open(path, "w") as fh:
        fh.write(code)
    try:
        spec = importlib.util.spec_from_file_location(f"test_dag_{dag_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _register_assets(module.dag)
        _share_the_execution_api()
        listener = _listen()
        dag_run = module.dag.test(**(test_kwargs or {}))
        result = _read(dag_run)
        result.errors, result.runs = listener.errors, listener.runs
        return result
    finally:
        os.remove(path)


def assert_failed_with(result: RunResult, task_id: str, error: type[BaseException], pattern: str) -> None:
    """The task failed, and for the reason the test means: the exception's type and message."""
    import re

    assert result.tasks[task_id] == "failed", result.tasks
    raised = result.errors.get(task_id)
    assert isinstance(raised, error), f"{task_id} failed with {raised!r}, not {error.__name__}"
    assert re.search(pattern, str(raised), re.S), f"{pattern!r} not in {str(raised)!r}"


class _TaskListener:
    """Notes the exception of every failed task try, and every start of a task: Airflow's task
    runner tells its listeners (``on_task_instance_failed`` and ``on_task_instance_running``, the
    same on 3.0 to 3.3) and ``dag.test()`` runs tasks in this process. Registered once; each run
    reads what its own tasks did."""

    hookimpl = pluggy.HookimplMarker("airflow")

    def __init__(self) -> None:
        self.errors: dict[str, BaseException] = {}
        self.runs: dict[str, int] = {}

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        self.runs[task_instance.task_id] = self.runs.get(task_instance.task_id, 0) + 1

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        if isinstance(error, BaseException):
            self.errors[task_instance.task_id] = error


_listener: _TaskListener | None = None


def _listen() -> _TaskListener:
    global _listener
    if _listener is None:
        try:
            from airflow.sdk.listener import get_listener_manager  # Airflow >= 3.2
        except ImportError:
            from airflow.listeners.listener import get_listener_manager
        _listener = _TaskListener()
        get_listener_manager().add_listener(_listener)
    _listener.errors, _listener.runs = {}, {}
    return _listener


def _share_the_execution_api() -> None:
    """Before 3.3, ``dag.test()`` builds a new in-process Execution API for every task, and its
    versioned routes (cadwyn) take 3 to 6 s to generate each time: a two-task DAG runs in 5-12 s
    instead of 0.5 s. Airflow 3.3 builds it once per process (``functools.lru_cache`` on
    ``supervisor.in_process_api_server``); the older legs get the same cache, so they spend their
    time on the provider, not on building Airflow's API again and again."""
    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)


def _register_assets(dag: Any) -> None:
    """Airflow 3.0's ``dag.test()`` does not write the DAG to the database, so its assets stay
    inactive and a task with an outlet fails ("inactive assets"); the DAG processor would have
    written it. Do what the DAG processor does. Later versions sync the DAG themselves."""
    from airflow_provider_hubexport.compat import AIRFLOW_V_3_1_PLUS

    if AIRFLOW_V_3_1_PLUS:
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dag import DAG as SchedulerDAG
    from airflow.serialization.serialized_objects import SerializedDAG

    DagBundlesManager().sync_bundles_to_db()
    scheduler_dag = SerializedDAG.deserialize_dag(SerializedDAG.serialize_dag(dag))
    SchedulerDAG.bulk_write_to_db("dags-folder", None, [scheduler_dag])


def _read(dag_run: Any) -> RunResult:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        result = RunResult(
            state=str(dag_run.state),
            tasks={ti.task_id: str(ti.state) for ti in tis},
            tries={ti.task_id: ti.try_number for ti in tis},
        )
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id)).all()
        # Values pushed through the Task Execution API are stored as JSON and come back as Python.
        result.xcom = {row.task_id: row.value for row in rows if row.key == "return_value"}
        for row in rows:
            if row.key != "return_value":
                result.keyed.setdefault(row.task_id, {})[row.key] = row.value
    return result
