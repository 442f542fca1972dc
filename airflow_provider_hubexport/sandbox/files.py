"""The file host: result files written on first need (the CRM says which records an export holds),
handed out under signed, expiring URLs, and served (whole, slowly or cut short, as the export's plan
says) without ever needing a token."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import os
import threading
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from airflow_provider_hubexport.sandbox import faults
from airflow_provider_hubexport.sandbox.content import Packaging, corrupt_file, write_rows, write_unsafe_zip
from airflow_provider_hubexport.sandbox.crm import Crm
from airflow_provider_hubexport.sandbox.faults import Addresses, FaultBook
from airflow_provider_hubexport.sandbox.rows import ExportRows
from airflow_provider_hubexport.sandbox.state import MOVED_PREFIX, Export, ExportBook
from airflow_provider_hubexport.sandbox.wire import Recorder

_CHUNK = 256 * 1024
_MIME = {
    ".csv": "text/csv; charset=utf-8",
    ".zip": "application/zip",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
}


class UrlSigner:
    """HMAC signatures over (export, file name, expiry), with a key that lives as long as the sandbox."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def signature(self, export_id: str, name: str, expires: int) -> str:
        msg = f"{export_id}/{name}/{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def valid(self, signature: str, export_id: str, name: str, expires: int) -> bool:
        return hmac.compare_digest(signature, self.signature(export_id, name, expires))


def _denied(message: str = "") -> web.Response:
    text = f"<Error><Code>AccessDenied</Code>{message and f'<Message>{message}</Message>'}</Error>"
    return web.Response(status=403, text=text, content_type="application/xml")


class FileSettings(Addresses, Protocol):
    """What the file host reads from the sandbox, on each use (a test may change it while it runs)."""

    workdir: str
    packaging: Packaging
    issued_signatures: list[str]  # each signature handed out is appended, for secret scans


class FileHost:
    """Serves the files of ``book``'s exports, of ``crm``'s records; each request is recorded, then
    ``fault_book`` may answer it instead."""

    def __init__(
        self, settings: FileSettings, book: ExportBook, crm: Crm, recorder: Recorder, fault_book: FaultBook
    ) -> None:
        self.settings = settings
        self.book = book
        self.crm = crm
        self.recorder = recorder
        self.fault_book = fault_book
        self.signer = UrlSigner()
        self._writing = threading.Lock()

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            await self.recorder.record(request, "files")
            answer = await faults.inject(self.fault_book, self.settings, "files", request)
            return answer if answer is not None else await handler(request)

        files = web.Application(middlewares=[record])
        for moved in ("", MOVED_PREFIX):  # also where a redirect fault points
            files.router.add_get(f"{moved}/hubspot-exports/{{export_id}}/{{name}}", self.download)
        return files

    def materialize(self, export: Export) -> None:
        """Write the export's file (once) into the sandbox's workdir.

        Under a lock of its own, not the export book's: the event loop takes that one on every
        request, and must not wait while a file is written (thousands of exports completing at once)."""
        settings = self.settings
        with self._writing:
            if export.file_path is not None:
                return
            directory = os.path.join(settings.workdir, export.id)
            os.makedirs(directory, exist_ok=True)
            name = str(export.request.get("exportName") or export.request["objectType"]).lower()
            base = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] + f"-{export.id}"
            if export.plan.unsafe_zip:
                path = write_unsafe_zip(directory, base)
            else:
                selection = self.crm.selection(export.id, export.request, export.plan.row_count)
                path = write_rows(
                    directory, base, ExportRows(selection), export.request["format"], settings.packaging
                )
            if export.plan.corrupt:
                corrupt_file(path, "directory" if export.plan.corrupt == "directory" else "data")
            self.book.attach_file(export, path)

    def signed_url(self, export: Export) -> str:
        assert export.file_path is not None
        name = os.path.basename(export.file_path)
        expires = self.book.url_expiry(export)
        sig = self.signer.signature(export.id, name, expires)
        self.settings.issued_signatures.append(sig)
        base = self.settings.files_url
        return f"{base}/hubspot-exports/{export.id}/{quote(name)}?Expires={expires}&Signature={sig}"

    async def download(self, request: web.Request) -> web.StreamResponse:
        export_id, name = request.match_info["export_id"], request.match_info["name"]
        try:
            expires = int(request.query.get("Expires", ""))
        except ValueError:
            expires = -1
        export = self.book.get(export_id)
        good = self.signer.valid(request.query.get("Signature", ""), export_id, name, expires)
        if export is None or export.file_path is None or not good:
            return _denied()
        if expires <= self.book.now():
            return _denied("Request has expired")
        cut = self.book.count_download(export)
        path = export.file_path
        size = os.path.getsize(path)
        headers = {
            "Content-Disposition": f'attachment; filename="{os.path.basename(path)}"',
            "Content-Type": _MIME.get(os.path.splitext(path)[1], "application/octet-stream"),
        }
        rate = export.plan.download_rate
        if export.plan.content_encoding == "gzip":
            with open(path, "rb") as fh:
                body = gzip.compress(fh.read(), compresslevel=1)
            return web.Response(body=body, headers={**headers, "Content-Encoding": "gzip"})
        if not cut and not rate:
            return web.FileResponse(path, chunk_size=_CHUNK, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        limit = max(1, size // 2) if cut else size
        chunk = min(_CHUNK, int(rate / 10)) if rate else _CHUNK
        sent = 0
        with open(path, "rb") as fh:
            while sent < limit:
                data = fh.read(min(chunk, limit - sent))
                try:
                    await response.write(data)
                except ConnectionResetError:  # the client went away (or was killed)
                    raise asyncio.CancelledError from None
                sent += len(data)
                if rate:
                    await asyncio.sleep(len(data) / rate)
        if cut:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        await response.write_eof()
        return response
