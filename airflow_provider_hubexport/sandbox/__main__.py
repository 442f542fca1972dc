"""``python -m airflow_provider_hubexport.sandbox``: run the sandbox in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from airflow_provider_hubexport.sandbox.server import DEFAULT_TOKEN, HUBSPOT_EXPORT_LIMIT, Sandbox
from airflow_provider_hubexport.sandbox.state import ExportPlan


def export_limit(text: str) -> tuple[int, float] | None:
    """``N/SECONDS``, e.g. ``30/86400`` (HubSpot's) or ``2/60``; ``none`` for no limit."""
    if text.strip().lower() == "none":
        return None
    count, sep, window = text.partition("/")
    try:
        limit = (int(count), float(window))
    except ValueError:
        limit = None
    if not sep or limit is None or limit[0] < 0 or not limit[1] > 0:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS, e.g. 30/86400, got {text!r}")
    return limit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_hubexport.sandbox",
        description="A HubSpot-compatible CRM Exports API on loopback, for DAG development without HubSpot.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (loopback only; default 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=8765, help="API port (default 8765; 0 picks a free one)")
    p.add_argument("--files-port", type=int, default=0, help="file host port (default: a free one)")
    p.add_argument(
        "--token", default=DEFAULT_TOKEN, help=f"the only Bearer token accepted (default {DEFAULT_TOKEN})"
    )
    p.add_argument("--pending-seconds", type=float, default=1.0, help="time an export stays PENDING")
    p.add_argument("--processing-seconds", type=float, default=2.0, help="time an export stays PROCESSING")
    p.add_argument(
        "--pending-polls",
        type=int,
        default=None,
        help="status answers an export stays PENDING (instead of --pending-seconds; with --processing-polls)",
    )
    p.add_argument(
        "--processing-polls",
        type=int,
        default=None,
        help="status answers an export stays PROCESSING (instead of --processing-seconds), e.g. 5",
    )
    p.add_argument(
        "--rows",
        type=int,
        default=25,
        help="the population of generated records of each object type: an unfiltered export's rows (default 25)",
    )
    p.add_argument("--url-ttl", type=float, default=300.0, help="seconds a signed result URL stays valid")
    p.add_argument("--cancel", action="store_true", help="every export ends CANCELED")
    p.add_argument(
        "--rate-limit", type=int, default=0, help="API requests allowed per --rate-window (0: none)"
    )
    p.add_argument("--rate-window", type=float, default=10.0, help="rate-limit window in seconds")
    p.add_argument(
        "--export-limit",
        type=export_limit,
        default=HUBSPOT_EXPORT_LIMIT,
        metavar="N/SECONDS",
        help="accept at most N export starts per rolling SECONDS, refusing the rest with HubSpot's "
        "daily-limit 429 (default HubSpot's, 30/86400; 'none' for no limit)",
    )
    p.add_argument(
        "--one-at-a-time",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="process one export at a time, the others waiting PENDING, as HubSpot does (default)",
    )
    p.add_argument("--workdir", default=None, help="where result files are written (default: a temp dir)")
    p.add_argument("--ready-file", default=None, help="write the API URL here once listening (for scripts)")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("--host must be a loopback address: the sandbox is for local development only")
    return args


async def serve(args: argparse.Namespace) -> None:
    plan = ExportPlan(
        pending_seconds=args.pending_seconds,
        processing_seconds=args.processing_seconds,
        pending_polls=args.pending_polls,
        processing_polls=args.processing_polls,
        url_ttl=args.url_ttl,
        cancel=args.cancel,
    )
    sandbox = Sandbox(
        token=args.token,
        host=args.host,
        port=args.port,
        files_port=args.files_port,
        plan=plan,
        rate_limit=(args.rate_limit, args.rate_window) if args.rate_limit else None,
        export_limit=args.export_limit,
        one_at_a_time=args.one_at_a_time,
        workdir=args.workdir,
    )
    for object_type in sandbox.crm.object_types():
        sandbox.crm.set_population(object_type.name, args.rows)
    await sandbox.start_async()
    print(f"HubSpot sandbox: API {sandbox.api_url}, files {sandbox.files_url}", flush=True)
    print("Use this connection:", flush=True)
    print(f"export AIRFLOW_CONN_HUBSPOT_DEFAULT='{json.dumps(sandbox.connection())}'", flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as fh:
            fh.write(sandbox.api_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sandbox.stop_async()
    print("HubSpot sandbox stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
