"""One download through ``HubSpotHook.download_export``, in a process of its own.

``python -m benchmarks.download_child TASK_ID DESTINATION`` with ``hubspot_default`` pointing at
the sandbox. Everything is imported and the connection read first; then the peak RSS is reset
(``/proc/self/clear_refs``), so the peak printed belongs to the download alone. Prints one JSON
line: seconds, bytes, RSS before, peak RSS, CPU seconds (and its user/system split), and the
seconds spent in the ZIP check. ``BENCH_CHECKSUM=sha256`` asks for the opt-in digest.

By hand, to see whether a slow first download is the code or the slot it runs in:
``BENCH_CURL_FIRST=<signed url>`` runs curl in this process's slot just before ours;
``BENCH_AGAIN_NEW_CONNECTION=1`` makes the repeat (``BENCH_AGAIN``) use a new connection.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any

from benchmarks import procstat


def _usage(before: resource.struct_rusage) -> dict[str, float]:
    """User and system CPU seconds and page faults since ``before``: where a download's CPU went."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user_s": now.ru_utime - before.ru_utime,
        "system_s": now.ru_stime - before.ru_stime,
        "minor_faults": now.ru_minflt - before.ru_minflt,
        "major_faults": now.ru_majflt - before.ru_majflt,
    }


def main(argv: list[str] | None = None) -> int:
    task_id, destination = (argv or sys.argv[1:])[:2]
    channel = procstat.protocol_channel()

    from airflow_provider_hubexport import landing
    from airflow_provider_hubexport.hooks import download  # noqa: F401 (download_export imports it)
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    checksum = os.environ.get("BENCH_CHECKSUM") or None  # the opt-in digest ("sha256")
    hook = HubSpotHook()
    hook.settings  # noqa: B018 (read the connection now, not in the measured part)

    check_s = [0.0]
    check_zip = getattr(landing, "check_zip", None)
    if check_zip is not None:  # time it; download_export looks it up when it runs

        def timed_check_zip(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return check_zip(*args, **kwargs)
            finally:
                check_s[0] += time.perf_counter() - t

        landing.check_zip = timed_check_zip  # type: ignore[assignment]

    curl_url = os.environ.get("BENCH_CURL_FIRST")  # by hand: curl in this very slot, before ours
    if curl_url:
        import subprocess

        target = os.path.join(destination, "curl-first.zip")
        t = time.perf_counter()
        subprocess.check_call(["curl", "-sS", "--fail", "-o", target, curl_url])
        curl_first_s = time.perf_counter() - t
        os.remove(target)
    procstat.warm_page_cache(destination, int(os.environ.get("BENCH_WARM_MIB") or 0))  # see download.WARM_MIB
    gc.collect()
    procstat.reset_peak_rss()
    rss_before = procstat.rss_bytes()
    cpu_before = procstat.cpu_seconds()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    m0 = time.monotonic()  # the windows on CLOCK_MONOTONIC, for a profile of this process (perf -k)
    landed = hook.download_export(task_id, destination, checksum=checksum)
    seconds = time.perf_counter() - started
    m1 = time.monotonic()
    usage = _usage(usage_before)
    cpu = procstat.cpu_seconds() - cpu_before
    peak = procstat.peak_rss_bytes()
    for item in landed:
        os.remove(item["path"])
    again: dict[str, float] = {}
    if os.environ.get("BENCH_AGAIN"):  # diagnostic: the same download again, as the first one's file is freed
        if os.environ.get("BENCH_AGAIN_NEW_CONNECTION"):  # by hand: not on the first one's connection
            hook.close()
            hook = HubSpotHook()
            hook.settings  # noqa: B018
        cpu_again = procstat.cpu_seconds()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        m2 = time.monotonic()
        for item in hook.download_export(task_id, destination, checksum=checksum):
            again["again_seconds"] = time.perf_counter() - started
            again["again_cpu_s"] = procstat.cpu_seconds() - cpu_again
            again["again_usage"] = _usage(usage_before)  # type: ignore[assignment]
            again["windows"] = [m0, m1, m2, time.monotonic()]  # type: ignore[assignment]
            os.remove(item["path"])
    hook.close()
    result = {
        "seconds": seconds,
        "bytes": sum(item["size"] for item in landed),
        "rss_before": rss_before,
        "peak_rss": peak,
        "cpu_s": cpu,
        "check_zip_s": check_s[0],
        "usage": usage,
        **({"curl_first_s": curl_first_s} if curl_url else {}),
        **again,
    }
    print(json.dumps(result), file=channel, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
