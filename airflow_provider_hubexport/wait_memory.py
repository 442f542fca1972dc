"""What a reschedule-mode wait remembers between its pokes.

In reschedule mode every poke is a new task process with a new sensor object, and Airflow clears
the task's own XComs each time the task starts (on every minor, 3.0 to 3.3; only a resumed deferral
keeps them). So the count of transient errors in a row, which decides when a wait gives up, must
live in the metadata database between pokes:

- Airflow 3.3 and later: the task's ``task_state_store`` (``context["task_state_store"]``), the
  store Airflow made for this (AIP-103): scoped to the task instance, shared by its tries.
- Airflow 3.0 to 3.2 have no such store: an Airflow Variable named after the task instance
  (``hubspot_export_wait:<dag>:<task>:<map index>:<run>``, or a digest of it where that is longer
  than Variable keys may be). It exists only while a wait remembers something (a run of transient
  errors, a status seen), and is deleted when the wait ends; a worker killed meanwhile leaves it
  behind, harmless (another try or run does not read it) and safe to delete.

A value names the try and the export it belongs to, so a retry (a new wait) or a different export
starts afresh. Light imports only: DAG files import the sensor, and the sensor imports this.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

STATE_KEY = "hubspot_export_wait"
VARIABLE_PREFIX = "hubspot_export_wait:"
VARIABLE_KEY_LIMIT = 250  # Airflow's Variable.key is a String(250)


class WaitMemory:
    """One task instance's remembered wait state, in whatever store its Airflow offers."""

    def __init__(self, context: Any, export_task_id: str, log: Any) -> None:
        ti = context["ti"]
        self._log = log
        self.export_task_id = str(export_task_id)
        self.try_number = int(getattr(ti, "try_number", 0) or 0)
        self._store = context.get("task_state_store") if hasattr(context, "get") else None
        self._variable = None if self._store is not None else variable_key(ti)
        self._saved: dict[str, Any] = {}
        self._stored = False  # anything under our key, ours or a stale one

    @property
    def where(self) -> str:
        return "task_state_store" if self._store is not None else f"Variable {self._variable!r}"

    def load(self) -> dict[str, Any]:
        """What an earlier poke of this try, for this export, left; empty otherwise."""
        value = self._read()
        self._stored = value is not None
        if (
            not isinstance(value, dict)
            or value.get("try_number") != self.try_number
            or value.get("export_task_id") != self.export_task_id
        ):
            self._saved = {}
            return {}
        self._saved = dict(value.get("state") or {})
        return dict(self._saved)

    def save(self, state: dict[str, Any]) -> None:
        """Remember ``state`` for the next poke; written only when it changed (a database write)."""
        if state == self._saved:
            return
        if not any(state.values()):
            self.forget()
            return
        value = {"try_number": self.try_number, "export_task_id": self.export_task_id, "state": state}
        if self._store is not None:
            self._store.set(STATE_KEY, value)
        else:
            from airflow.sdk import Variable

            Variable.set(  # as JSON text: 3.0's serialize_json hands the dict to a str field
                self._variable,
                json.dumps(value),
                description="airflow-provider-hubexport: a HubSpot export sensor's wait in reschedule "
                "mode (deleted when the wait ends)",
            )
        self._saved, self._stored = dict(state), True

    def forget(self) -> None:
        """The wait is over (or has nothing to remember): leave nothing behind. Never raises: a
        wait's outcome must not change because its memory could not be deleted (what is left is
        harmless, and said in the log)."""
        if not self._stored:
            return
        try:
            if self._store is not None:
                self._store.delete(STATE_KEY)
            else:
                from airflow.sdk import Variable

                Variable.delete(self._variable)
        except Exception as err:
            self._log.warning("Could not delete the wait's memory (%s): %s", self.where, err)
            return
        self._saved, self._stored = {}, False

    def _read(self) -> Any:
        if self._store is not None:
            return self._store.get(STATE_KEY)
        from airflow.sdk import Variable

        text = Variable.get(self._variable, default=None)  # JSON read here: 3.0's deserialize_json warns
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None  # not ours to read: the next save replaces it


def variable_key(ti: Any) -> str:
    """The Variable a task instance's wait is remembered in below Airflow 3.3."""
    map_index = getattr(ti, "map_index", -1)
    key = f"{VARIABLE_PREFIX}{ti.dag_id}:{ti.task_id}:{map_index}:{ti.run_id}"
    if len(key) <= VARIABLE_KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{VARIABLE_PREFIX}{ti.dag_id[:80]}:{ti.task_id[:80]}:{digest}"
