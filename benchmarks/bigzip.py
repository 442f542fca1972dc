"""A large export ZIP, written in seconds rather than the sandbox's minutes.

Why: the sandbox writes about 3 MB of ZIP a second (its rows are made one by one in Python and
deflated at level 6), so a 1 GiB export would take it about six minutes, most of the benchmark's
budget. This writes the same kind of file, the way the sandbox packages a big CSV export (one ZIP,
deflated CSV members of 1,000,000 rows each, with a header line), from the sandbox's own rows: a
block of rows is generated and deflated once, then repeated. Each repetition is compressed
independently (a full flush resets the dictionary), so the ZIP costs a reader exactly what an
archive of that many different rows of the same kind would: inflating about five bytes of CSV per
byte of ZIP.
"""

from __future__ import annotations

import csv
import io
import struct
import zlib
from dataclasses import dataclass

from airflow_provider_hubexport.sandbox.content import RowSource

# Properties of a typical contacts export: ids, emails, names, dates, amounts (about 5:1 deflated).
PROPERTIES = ["hs_object_id", "email", "firstname", "lastname", "company", "createdate", "amount"]
BLOCK_ROWS = 100_000
MEMBER_ROWS = 1_000_000  # the sandbox's (and HubSpot's) rows per file
_DOS_TIME, _DOS_DATE = 0, (2026 - 1980) << 9 | 11 << 5 | 27


@dataclass(frozen=True)
class ZipInfo:
    size: int  # bytes of the ZIP
    members: int
    csv_bytes: int  # bytes of CSV inside, all members


def _deflated(data: bytes) -> bytes:
    """Raw deflate of ``data`` ending in a full flush: self-contained, and can be followed by more."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush(zlib.Z_FULL_FLUSH)


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def write_export_zip(path: str, target_bytes: int, export_id: str, base_name: str) -> ZipInfo:
    """Write a ZIP of at least ``target_bytes`` (within one member) at ``path``."""
    header = _csv([PROPERTIES])
    block = _csv(list(RowSource(export_id, "CONTACT", PROPERTIES).rows(0, BLOCK_ROWS)))
    repeats = MEMBER_ROWS // BLOCK_ROWS
    head, body, tail = _deflated(header), _deflated(block), zlib.compressobj(6, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(header)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    usize = len(header) + repeats * len(block)
    csize = len(head) + repeats * len(body) + len(tail)
    count = max(1, -(-target_bytes // csize))
    central = []
    with open(path, "wb") as out:
        for i in range(1, count + 1):
            name = f"{base_name}-{i}.csv".encode()
            offset = out.tell()
            out.write(
                struct.pack(
                    "<IHHHHHIIIHH",
                    0x04034B50,
                    20,
                    0,
                    8,
                    _DOS_TIME,
                    _DOS_DATE,
                    crc,
                    csize,
                    usize,
                    len(name),
                    0,
                )
                + name
            )
            out.write(head)
            for _ in range(repeats):
                out.write(body)
            out.write(tail)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    3 << 8 | 20,  # made by: unix, 2.0
                    20,
                    0,
                    8,
                    _DOS_TIME,
                    _DOS_DATE,
                    crc,
                    csize,
                    usize,
                    len(name),
                    0,
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    offset,
                )
                + name
            )
        cd_offset = out.tell()
        out.write(b"".join(central))
        cd_size = out.tell() - cd_offset
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0))
        size = out.tell()
    return ZipInfo(size, count, count * usize)
