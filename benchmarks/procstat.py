"""What a measuring child process knows about itself: RSS, peak RSS and CPU seconds.

Linux only (``/proc``). Standard library only, so importing it does not move the baseline.
"""

from __future__ import annotations

import os
import resource
from typing import TextIO

MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_bytes() -> int:
    """Resident set size now."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size since start, or since the last ``reset_peak_rss()``."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current RSS, so a peak belongs to the phase that follows."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def cpu_seconds() -> float:
    """User plus system CPU time of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def protocol_channel() -> TextIO:
    """A private copy of stdout for a child's answers; fd 1 then points at stderr.

    Airflow's logging writes to stdout, and a stray line must not be taken for the answer.
    """
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return channel


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to others while this VM's CPUs wanted it (all CPUs, since
    boot): a figure that grows during a run was slowed by the host, not by the code measured."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def available_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def warm_page_cache(directory: str, mib: int) -> None:
    """Write ``mib`` MiB to a scratch file in ``directory``, then delete it, so that the page
    cache a download is about to fill reuses memory freed just now.

    On a VM that hands freed memory back to its host (virtio-balloon free page reporting), memory
    freed more than ~2 s ago costs a fault on the host at its first touch, and a download that
    fills 1 GiB of page cache with it runs at a third of its speed: by how long ago the last big
    file was freed, not by its code. Anonymous memory touched and freed does not stand in for it
    (measured: the page cache kept coming from reported memory). Done right before each timed
    download, ours (after its imports) and curl alike."""
    mib = min(mib, available_mib() // 4)  # never enough to press a small machine
    if mib <= 0:
        return
    path = os.path.join(directory, ".bench-warm-page-cache")
    block = b"\0" * MIB
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, block)
    finally:
        os.close(fd)
        os.remove(path)
