"""LibreTranslate's ``POST /translate_file`` and ``GET /download_file/<name>``: a .txt, .html, .srt or
.docx in, the same document translated out, kept ``--files-ttl`` seconds for its download.

Fields, messages and answers are LibreTranslate 1.9.6's (``serve.libretranslate.contract``); where it
answers 500 for a client's mistake we answer 4xx (a corrupt file 400, an unknown or expired download
404). The document's distinct texts (``serve.files``) are translated by ``LibreTranslate.translate_segments``,
the path of ``/translate``, so each gets the translation ``/translate`` gives it. A file costs
``request_cost`` requests: one at the door (``AccessMiddleware``), the rest once its text is known.
Files go to a local folder, or to Redis with ``--shared-storage`` (then any replica serves the
download); the store is opened on first use in each HTTP process.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from serve import files
from serve.files.filestore import NAME_PATTERN
from serve.libretranslate import contract
from serve.libretranslate.fields import PREFIX, LibreTranslateError
from serve.libretranslate.routes import LibreTranslate, guard
from serve.libretranslate.schema import ERROR
from serve.native.schemas import BOUND
from serve.ops.ratelimit import CHARGE_SCOPE
from serve.store.per_process import PerProcess

PATHS = ("/translate_file", PREFIX + "/translate_file")
DOWNLOAD_PATHS = ("/download_file/{name}", PREFIX + "/download_file/{name}")
FORM_OVERHEAD = 65536  # bytes of a multipart body beyond the file: boundaries, headers, the fields
STORE_ERRORS = (OSError, redis.RedisError)
RETRY_AFTER_S = "5"


@dataclass(frozen=True)
class FileSettings:
    """``--disable-files-translation`` (``enabled`` False), the document limits, where files go, and
    ``--url-prefix`` (part of each ``translatedFileUrl``)."""

    enabled: bool
    limits: files.Limits
    store: PerProcess[files.FileStore]
    url_prefix: str = ""


def file_store(shared_storage: str | None, directory: str | None, ttl: float) -> PerProcess[files.FileStore]:
    return PerProcess(lambda: files.open_file_store(shared_storage or None, directory or None, ttl))


class BodySizes:
    """ASGI middleware: bodies up to ``max_body`` bytes, uploads to the file routes up to ``max_upload``
    (LitServe's own limit is set to the larger). Over it, ``receive`` raises 413 as LitServe's does."""

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int) -> None:
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload if scope["path"] in PATHS else self.max_body
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, "Payload too large")
            return message

        await self.app(scope, limited, send)


def _store_error(e: Exception) -> LibreTranslateError:
    return LibreTranslateError(
        503, f"the file store cannot be used now, retry later ({e})", {"Retry-After": RETRY_AFTER_S}
    )


def install_files(app: FastAPI, lt: LibreTranslate, settings: FileSettings) -> None:
    """The two routes (and under ``PREFIX``). Off, they answer as LibreTranslate's (403 to an upload,
    400 to a download) and the API document leaves them out."""
    catalog, limits = lt.catalog, settings.limits

    async def translate_file(request: Request, body: dict) -> dict | Response:
        upload = (await request.form()).get("file")  # read_body already parsed it: no second parse
        name = upload.filename if isinstance(upload, UploadFile) else None
        filename, source, target = contract.translate_file_fields(
            body, name, True, files.SUPPORTED_EXTENSIONS
        )
        languages = catalog.languages()
        for code in (source, target):
            if code not in languages and not (code == source == "auto"):
                raise LibreTranslateError(400, contract.NOT_SUPPORTED.format(lang=code))
        data = await upload.read(limits.max_bytes + 1)
        try:
            doc = await run_in_threadpool(files.parse_document, data, filename, limits)
        except files.FileError as e:
            raise LibreTranslateError(400, str(e)) from None
        charge = request.scope.get(CHARGE_SCOPE)
        cost = files.request_cost(doc.chars, BOUND.get().limits.max_chars)
        refusal = charge(cost - 1) if charge is not None else None
        if refusal is not None:
            return refusal
        if source == "auto":
            found = lt.detector.detect(doc.sample(contract.DETECT_SAMPLE))
            source = found[0][0] if found else target
        unique = files.unique_texts(doc)
        longest = max(map(len, unique), default=0)
        if longest > BOUND.get().limits.max_chars:  # each text is one request's text, as on /translate
            limit = BOUND.get().limits.max_chars
            raise LibreTranslateError(400, f"Invalid request: a text of {longest} characters in the file, "
                                           f"the limit is {limit} per paragraph")  # fmt: skip
        outs = await lt.translate_segments(unique, source, target, 1)
        rendered = await run_in_threadpool(files.render_unique, doc, unique, [o[0] for o in outs])
        stored = files.stored_name(filename, target)
        try:
            await run_in_threadpool(lambda: settings.store.get().put(stored, rendered))
        except STORE_ERRORS as e:
            raise _store_error(e) from None
        base = str(request.base_url).rstrip("/") + settings.url_prefix
        if request.url.path.startswith(PREFIX + "/"):
            base += PREFIX
        return {"translatedFileUrl": contract.download_url(base, stored)}

    guarded = guard(lt, translate_file)

    async def upload_route(request: Request) -> Response:
        if not settings.enabled:
            return JSONResponse({"error": contract.FILES_DISABLED}, status_code=403)
        try:
            return await guarded(request)
        finally:
            await request.close()  # the upload's spooled file

    async def download_route(request: Request) -> Response:
        name = request.path_params["name"]
        if not settings.enabled:
            return JSONResponse({"error": contract.FILES_DISABLED}, status_code=400)
        try:
            data = await run_in_threadpool(lambda: settings.store.get().get(name))
        except files.InvalidFileName:
            return JSONResponse({"error": contract.INVALID_FILENAME}, status_code=400)
        except files.StoredFileNotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except STORE_ERRORS as e:
            error = _store_error(e)
            return JSONResponse({"error": error.message}, status_code=503, headers=error.headers)
        return Response(data, headers=contract.download_headers(files.download_name(name)))

    docs = openapi(lt, settings)
    for path in PATHS:
        app.add_api_route(
            path,
            upload_route,
            methods=["POST"],
            include_in_schema=settings.enabled and path == PATHS[0],
            **docs[0],
        )
    for path in DOWNLOAD_PATHS:
        app.add_api_route(
            path,
            download_route,
            methods=["GET"],
            include_in_schema=settings.enabled and path == DOWNLOAD_PATHS[0],
            **docs[1],
        )


def openapi(lt: LibreTranslate, settings: FileSettings) -> tuple[dict, dict]:
    """``add_api_route`` arguments documenting the upload and the download."""
    languages = sorted(lt.catalog.languages())

    def answer(description: str, schema: dict = ERROR, media: str = "application/json") -> dict:
        return {"description": description, "content": {media: {"schema": schema}}}

    form = {
        "type": "object",
        "required": ["file", "source", "target"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": f"a {', '.join(files.SUPPORTED_EXTENSIONS)} file of at most "
                f"{settings.limits.max_bytes} bytes",
            },
            "source": {"type": "string", "enum": ["auto", *languages]},
            "target": {"type": "string", "enum": languages},
            "api_key": {"type": "string", "description": "as for /translate"},
        },
    }
    url = {
        "type": "object",
        "required": ["translatedFileUrl"],
        "properties": {"translatedFileUrl": {"type": "string", "format": "uri"}},
    }
    upload = {
        "200": answer("where to download the translated file (for --files-ttl seconds)", url),
        "400": answer("a missing field, an unsupported format or language, a corrupt or too large file"),
        "403": answer("file translation is off (--disable-files-translation), or a wrong API key"),
        "413": answer("a body over the size limit"),
        "503": answer("the inference worker died, or the file store cannot be written: retry"),
        "504": answer("the request waited in the queue longer than the server's --timeout"),
    }
    download = {
        "200": answer(
            "the translated file, as an attachment",
            {"type": "string", "format": "binary"},
            "application/octet-stream",
        ),
        "400": answer("a name the server never makes, or file translation is off"),
        "404": answer("no such file, or it has expired"),
        "503": answer("the file store cannot be read now: retry"),
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": NAME_PATTERN},
            "description": "the last part of a translatedFileUrl"}  # fmt: skip
    return (
        {
            "summary": "LibreTranslate's /translate_file: a document translated, kept for download",
            "openapi_extra": {
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
                "responses": upload,
            },
        },
        {
            "summary": "LibreTranslate's /download_file: a translated document",
            "openapi_extra": {"parameters": [name], "responses": download},
        },
    )
