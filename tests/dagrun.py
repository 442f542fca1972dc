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

from conftest import DAGS_DIR


@dataclass
class RunResult:
    state: str
    tasks: dict[str, str]
    xcom: dict[str, Any] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)


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
        dag_run = module.dag.test(**(test_kwargs or {}))
        return _read(dag_run)
    finally:
        os.remove(path)


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
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")
        ).all()
        # Values pushed through the Task Execution API are stored as JSON and come back as Python.
        result.xcom = {row.task_id: row.value for row in rows}
    return result
