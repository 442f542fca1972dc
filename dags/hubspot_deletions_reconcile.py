"""Find the contacts deleted in HubSpot, which no export shows.

HubSpot's exports carry no archived (deleted) records, so an incremental load never sees a
deletion. The reconciliation users do instead: export only ``hs_object_id`` for every contact
(one export a day, of the 30 HubSpot allows; a small file even for millions of contacts), and
compare it with the previous snapshot: an id that was there and is gone was deleted (or merged
into another record). The deleted ids land beside the snapshots, for the warehouse to mark.

Snapshots and results are local files here; with object storage, read the previous snapshot with
``ObjectStoragePath`` the same way.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_hubexport.operators.export import HubSpotExportOperator

EXPORT_ROOT = os.environ.get("HUBSPOT_EXPORT_DIR", "/tmp/hubspot-exports")
POKE_INTERVAL = float(os.environ.get("HUBSPOT_POKE_INTERVAL", "30"))

with DAG(
    dag_id="hubspot_deletions_reconcile",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # each run compares with the snapshot before it
    tags=["hubspot", "example"],
    doc_md=__doc__,
) as dag:
    snapshot = HubSpotExportOperator(
        task_id="export_ids",
        object_type="CONTACT",
        object_properties=["hs_object_id"],  # every contact, its id only: no filter, no window
        export_internal_values_options=["NAMES"],
        destination=EXPORT_ROOT + "/contacts_ids/{{ ds }}",
        filename="ids",
        unzip=True,
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        retries=2,
    )

    @task
    def find_deleted(landed: list[dict], ds: str | None = None) -> list[str]:
        """The ids in the previous snapshot that are missing from this one, written to
        ``contacts_deleted/<ds>.csv``; none on the first run."""
        import csv
        import logging
        from pathlib import Path

        def ids(paths) -> set[str]:
            found: set[str] = set()
            for path in paths:
                with open(path, newline="", encoding="utf-8") as fh:
                    found |= {row["hs_object_id"] for row in csv.DictReader(fh)}
            return found

        if not ds:
            raise ValueError("find_deleted compares dated snapshots: run it with a logical date.")
        root = Path(EXPORT_ROOT)
        earlier = sorted(p for p in (root / "contacts_ids").iterdir() if p.is_dir() and p.name < ds)
        if not earlier:
            logging.getLogger(__name__).info("First snapshot: nothing to compare with.")
            return []
        now, before = ids(item["path"] for item in landed), ids(earlier[-1].glob("*.csv"))
        if before and not now:
            # An empty export is far likelier a fault than every contact deleted: mark nothing.
            raise ValueError(
                f"The snapshot is empty and {earlier[-1].name}'s had {len(before)} ids: not marking them all deleted."
            )
        deleted = sorted(before - now, key=int)
        out = root / "contacts_deleted" / f"{ds}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("hs_object_id\n" + "".join(f"{i}\n" for i in deleted))
        logging.getLogger(__name__).info(
            "%d contacts deleted since %s: %s", len(deleted), earlier[-1].name, out
        )
        return deleted

    find_deleted(snapshot.output)
