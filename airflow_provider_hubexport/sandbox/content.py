"""An export's files: its rows written as CSV, XLSX or XLS, packaged the way HubSpot packages them
(zipped over 2 MB, split past a number of rows). What the rows are is ``rows``'s.

Files are written to disk row by row, so an export of hundreds of MB never sits in memory.
"""

from __future__ import annotations

import io
import itertools
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from airflow_provider_hubexport.sandbox.crm import Crm
from airflow_provider_hubexport.sandbox.rows import ExportRows, csv_line
from airflow_provider_hubexport.sandbox.zipping import write_zip


@dataclass(frozen=True)
class Packaging:
    """HubSpot (since 2025) zips a CSV over 2 MB and splits rows over several files past a limit."""

    zip_over_bytes: int = 2 * 1024 * 1024
    rows_per_file: int = 1_000_000
    rows_per_xls_file: int = 65_535


def _csv_header(header: list[str]) -> bytes:
    return csv_line(header)


def _write_csv(path: str, header: list[str], source: ExportRows, start: int, count: int) -> None:
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


def _write_xlsx(path: str, header: list[str], source: ExportRows, start: int, count: int) -> None:
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


def _write_xls(path: str, header: list[str], source: ExportRows, start: int, count: int) -> None:
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


def write_rows(directory: str, base_name: str, rows: ExportRows, fmt: str, packaging: Packaging) -> str:
    """Write an export's rows into ``directory`` and return the path of what gets served."""
    writer, ext = WRITERS[fmt]
    per_file = packaging.rows_per_xls_file if fmt == "XLS" else packaging.rows_per_file
    row_count = rows.count
    spans = [(start, min(per_file, row_count - start)) for start in range(0, row_count, per_file)] or [(0, 0)]
    names = [f"{base_name}-{n}.{ext}" for n in range(1, len(spans) + 1)]
    archive = os.path.join(directory, f"{base_name}.zip")
    if fmt == "CSV" and rows.csv_size_estimate(row_count) > 2 * packaging.zip_over_bytes:
        # Certainly zipped: the CSV goes straight into the archive, never to disk on its own.
        names = names if len(spans) > 1 else [f"{base_name}.{ext}"]
        head = _csv_header(rows.header)
        write_zip(
            archive,
            (
                (name, itertools.chain((head,), rows.csv_chunks(start, count)))
                for name, (start, count) in zip(names, spans, strict=True)
            ),
        )
        return archive
    parts = [os.path.join(directory, name) for name in names]
    for part, (start, count) in zip(parts, spans, strict=True):
        writer(part, rows.header, rows, start, count)
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
    """The file an unfiltered export of ``properties`` would be, of a fresh CRM with ``row_count``
    generated records of ``object_type`` (the benchmarks size their exports with it). The rows do
    not depend on ``export_id`` (kept for callers of the old signature)."""
    crm = Crm()
    body = {"exportType": "VIEW", "format": fmt, "objectType": object_type, "objectProperties": properties}
    crm.start_export(export_id, crm.read_query(body), row_count)
    return write_rows(directory, base_name, ExportRows(crm.selection(export_id)), fmt, packaging)


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
