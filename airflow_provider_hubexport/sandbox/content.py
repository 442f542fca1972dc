"""Deterministic CRM rows written as CSV, XLSX or XLS files, packaged the way HubSpot packages them.

Files are written to disk row by row, so an export of hundreds of MB never sits in memory.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from airflow_provider_hubexport.sandbox.zipping import write_zip

FIRST_NAMES = ["Ada", "Zoë", "José", "Søren", "李", "Renée", "O'Brien", "Łukasz", "Ngozi", "Émile"]
LAST_NAMES = ["Lovelace", "Müller", "García, Jr.", 'the "Hammer"', "Ångström", "Nakamura", "Okafor"]
COMPANIES = ["Acme, Inc.", "Globex", 'Initech "Labs"', "Umbrella\nHoldings", "Stark Industries", "Wayne Ent."]


def _value(rng: random.Random, prop: str, i: int, object_type: str) -> str:
    p = prop.lower()
    if p in ("hs_object_id", "id", "vid"):
        return str(1000 + i)
    if "email" in p:
        return f"user{i}@example.com"
    if p.startswith("first"):
        return rng.choice(FIRST_NAMES)
    if p.startswith("last"):
        return rng.choice(LAST_NAMES)
    if p in ("company", "name", "dealname"):
        return rng.choice(COMPANIES)
    if "date" in p or p.endswith("_at"):
        return f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
    if "amount" in p or "revenue" in p:
        return f"{rng.randint(0, 10_000_000) / 100:.2f}"
    if "notes" in p or "description" in p:
        return rng.choice(["plain", "two\nlines", 'said "hi", left', "emoji 🚀 ok", ""])
    return f"{object_type.lower()}-{prop}-{i}"


BLOCK_ROWS = 1000  # a power of ten: see RowSource
_SLOT = "@@{}@@"  # marks a row-numbered cell while a block row is rendered as CSV


def _numbered(prop: str, object_type: str) -> tuple[str, int] | None:
    """The %-template and offset of a cell that is just the row number in a fixed frame, else None."""
    p = prop.lower()
    if p in ("hs_object_id", "id", "vid"):
        return "%d", 1000
    if "email" in p:
        return "user%d@example.com", 0
    if not any(
        k in p
        for k in (
            "first",
            "last",
            "company",
            "name",
            "date",
            "_at",
            "amount",
            "revenue",
            "notes",
            "description",
        )
    ):
        generic = f"{object_type.lower()}-{prop}-".replace("%", "%%")
        if not any(c in generic for c in ',"\r\n@'):
            return generic + "%d", 0
    return None


class RowSource:
    """An export's rows, a function of the export id alone: the same export always has the same bytes.

    Row ``i`` is row ``i % BLOCK_ROWS`` of one block drawn from the export's seed, with its
    row-numbered cells (ids, emails, generated values) numbered ``i``; so a CSV of millions of rows
    is written a block at a time with one %-format, at the speed of the disk.

    Past the first block, block ``k``'s numbers are ``k`` (plus the cell's offset in thousands)
    followed by the row's three digits within the block: those digits are part of the block's
    template, and a block is the template with one short prefix pasted into each numbered cell
    (``%s`` of bytes, no number formatting), several hundred MB a second.
    """

    def __init__(
        self, export_id: str, object_type: str, properties: list[str], rows: int = BLOCK_ROWS
    ) -> None:
        """``rows``: how many rows the export has; a smaller export draws only those rows of the
        block (the same ones: rows are drawn in order), so a 1-row export costs no 1,000-row block."""
        rng = random.Random(f"{export_id}:{object_type}")
        self.frames = [_numbered(prop, object_type) for prop in properties]
        drawn = max(1, min(BLOCK_ROWS, rows))
        self.block = [[_value(rng, prop, j, object_type) for prop in properties] for j in range(drawn)]
        slots = [(c, f) for c, f in enumerate(self.frames) if f is not None]
        out = io.StringIO()
        writer = csv.writer(out)
        rows_any: list[bytes] = []  # per block row: its CSV line as a %-template of the numbers
        rows_aligned: list[bytes] = []  # the same, of the prefixes (block 1 onwards)
        for j, row in enumerate(self.block):
            cells = list(row)
            for c, _ in slots:
                cells[c] = _SLOT.format(c)
            out.seek(0)
            out.truncate()
            writer.writerow(cells)
            line = out.getvalue().replace("%", "%%")
            any_line = aligned_line = line
            for c, (template, _) in slots:
                any_line = any_line.replace(_SLOT.format(c), template)
                head, _, tail = template.rpartition("%d")  # the number's place (the last %d)
                aligned_line = aligned_line.replace(_SLOT.format(c), f"{head}%s{j:03d}{tail}")
            rows_any.append(any_line.encode())
            rows_aligned.append(aligned_line.encode())
        self._rows_any = rows_any
        self._block_any = b"".join(rows_any)
        self._block_aligned = b"".join(rows_aligned)
        self._block_plain = self._block_any % () if not slots else b""  # no numbered cell: no %-slots
        # The number each slot of the block shows for block 0; block b adds b * BLOCK_ROWS.
        self._bases = [j + offset for j in range(drawn) for _, (_, offset) in slots]
        self._per_row = len(slots)
        # Block k >= 1: each slot's prefix is k + its offset in thousands (all offsets are whole
        # thousands, so the row's own three digits never carry into the prefix).
        self._offsets = [offset // BLOCK_ROWS for _, (_, offset) in slots]
        assert all(offset % BLOCK_ROWS == 0 for _, (_, offset) in slots)

    def csv_size_estimate(self, count: int) -> int:
        """About how many bytes of CSV ``count`` rows make (the block's average row length)."""
        return len(self._block_any) * count // len(self.block)

    def row(self, i: int) -> list[str]:
        cells = list(self.block[i % BLOCK_ROWS])
        for c, frame in enumerate(self.frames):
            if frame is not None:
                cells[c] = frame[0] % (i + frame[1])
        return cells

    def rows(self, start: int, count: int) -> Iterator[list[str]]:
        for i in range(start, start + count):
            yield self.row(i)

    def csv_chunks(self, start: int, count: int) -> Iterator[bytes]:
        """The CSV lines (UTF-8) of rows ``start`` to ``start + count``, in chunks of up to a block."""
        i, stop = start, start + count
        n = self._per_row
        while i < stop:
            j = i % BLOCK_ROWS
            if j == 0 and stop - i >= BLOCK_ROWS:
                k = i // BLOCK_ROWS
                if k == 0:
                    yield self._block_any % tuple(self._bases)
                elif n == 0:
                    yield self._block_plain
                else:
                    prefixes = [b"%d" % (k + offset) for offset in self._offsets]
                    yield self._block_aligned % (tuple(prefixes) * BLOCK_ROWS)
                i += BLOCK_ROWS
                continue
            values = tuple(i - j + base for base in self._bases[j * n : (j + 1) * n])
            yield self._rows_any[j] % values
            i += 1


@dataclass(frozen=True)
class Packaging:
    """HubSpot (since 2025) zips a CSV over 2 MB and splits rows over several files past a limit."""

    zip_over_bytes: int = 2 * 1024 * 1024
    rows_per_file: int = 1_000_000
    rows_per_xls_file: int = 65_535


def _csv_header(header: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(header)
    return out.getvalue().encode()


def _write_csv(path: str, header: list[str], source: RowSource, start: int, count: int) -> None:
    with open(path, "wb") as fh:
        fh.write(_csv_header(header))
        for chunk in source.csv_chunks(start, count):
            fh.write(chunk)


def _col(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


_XLSX_STATIC = {
    "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
    "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Export" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/></Relationships>',
}


def _write_xlsx(path: str, header: list[str], source: RowSource, start: int, count: int) -> None:
    """A minimal, valid XLSX with inline strings, streamed row by row into the ZIP."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in _XLSX_STATIC.items():
            zf.writestr(name, text)
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            out = io.TextIOWrapper(fh, encoding="utf-8")
            out.write(
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            )

            def row_xml(r: int, values: list[str]) -> str:
                cells = "".join(
                    f'<c r="{_col(c)}{r}" t="inlineStr"><is><t xml:space="preserve">{escape(v)}</t></is></c>'
                    for c, v in enumerate(values)
                )
                return f'<row r="{r}">{cells}</row>'

            out.write(row_xml(1, header))
            for n, row in enumerate(source.rows(start, count), start=2):
                out.write(row_xml(n, row))
            out.write("</sheetData></worksheet>")
            out.flush()
            out.detach()


def _write_xls(path: str, header: list[str], source: RowSource, start: int, count: int) -> None:
    try:
        import xlwt
    except ImportError:
        raise RuntimeError(
            "The sandbox writes XLS files with xlwt: pip install xlwt (it is in the test extra)."
        )
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Export")
    for c, v in enumerate(header):
        sheet.write(0, c, v)
    for n, row in enumerate(source.rows(start, count), start=1):
        for c, v in enumerate(row):
            sheet.write(n, c, v)
    book.save(path)


WRITERS = {"CSV": (_write_csv, "csv"), "XLSX": (_write_xlsx, "xlsx"), "XLS": (_write_xls, "xls")}


def write_export(
    directory: str,
    base_name: str,
    export_id: str,
    object_type: str,
    properties: list[str],
    fmt: str,
    row_count: int,
    packaging: Packaging,
) -> str:
    """Write the export's file(s) into ``directory`` and return the path of what gets served."""
    writer, ext = WRITERS[fmt]
    per_file = packaging.rows_per_xls_file if fmt == "XLS" else packaging.rows_per_file
    source = RowSource(export_id, object_type, properties, rows=row_count)
    spans = [(start, min(per_file, row_count - start)) for start in range(0, row_count, per_file)] or [(0, 0)]
    names = [f"{base_name}-{n}.{ext}" for n in range(1, len(spans) + 1)]
    archive = os.path.join(directory, f"{base_name}.zip")
    if fmt == "CSV" and source.csv_size_estimate(row_count) > 2 * packaging.zip_over_bytes:
        # Certainly zipped: the CSV goes straight into the archive, never to disk on its own.
        names = names if len(spans) > 1 else [f"{base_name}.{ext}"]
        head = _csv_header(properties)
        write_zip(
            archive,
            (
                (name, itertools.chain((head,), source.csv_chunks(start, count)))
                for name, (start, count) in zip(names, spans, strict=True)
            ),
        )
        return archive
    parts = [os.path.join(directory, name) for name in names]
    for part, (start, count) in zip(parts, spans, strict=True):
        writer(part, properties, source, start, count)
    single = os.path.join(directory, f"{base_name}.{ext}")
    if len(parts) == 1:
        os.replace(parts[0], single)
        if fmt != "CSV" or os.path.getsize(single) <= packaging.zip_over_bytes:
            return single
        parts = [single]
    write_zip(archive, ((os.path.basename(part), _chunks_of(part)) for part in parts))
    for part in parts:
        os.remove(part)
    return archive


def _chunks_of(path: str, size: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def write_unsafe_zip(directory: str, base_name: str) -> str:
    """A ZIP whose members try to escape the extraction directory."""
    archive = os.path.join(directory, f"{base_name}.zip")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.csv", "id\n1\n")
        zf.writestr("../escaped.csv", "id\n2\n")
        zf.writestr("/tmp/absolute.csv", "id\n3\n")
    return archive


def corrupt_file(path: str, where: str = "data") -> None:
    """Damage a file, keeping its size, as a broken storage layer would: in the middle ("data"),
    or at the end, where a ZIP keeps its directory ("directory")."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(size // 2 if where == "data" else max(0, size - 64))
        fh.write(b"\0" * min(64, max(1, size - size // 2)))
