"""``make airflow``'s set-up of its AIRFLOW_HOME, in one process: the database migrated only when
its schema is behind this Airflow, and the ``hubspot_default`` connection written in place.

One process rather than ``airflow db migrate``, ``connections delete`` and ``connections add``:
each CLI command pays for importing Airflow and its providers again (5-25 s on a busy 2-core
machine). Run with the stack's environment; prints one JSON line of what it did and how long each
step took.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    started = time.monotonic()
    connection = json.loads(sys.argv[1])
    # As every `airflow` command does first: airflow.cfg, with the JWT secret that the components
    # started next must share (each would otherwise make up its own, and refuse the others' tokens).
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    from airflow.utils import db

    imported = time.monotonic()
    try:
        db.check_migrations(timeout=1)  # returns at once when the schema is current
        migrated = False
    except Exception:  # behind (TimeoutError), or no tables at all yet
        db.upgradedb()  # what `airflow db migrate` runs
        migrated = True
    database = time.monotonic()

    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id == connection["conn_id"]))
        session.add(Connection(**connection))
    done = time.monotonic()
    print(
        json.dumps(
            {
                "import_s": round(imported - started, 1),
                "database_s": round(database - imported, 1),
                "migrated": migrated,
                "connection_s": round(done - database, 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
