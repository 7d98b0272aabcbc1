"""LibreTranslate's API on the same server and workers: ``/translate`` (a ``q`` body), ``/detect`` (a
list ``q`` gives one merged list), ``/languages``, also under ``/libretranslate/`` for clients given
that base URL. ``/suggest``, ``/translate_file`` and ``/frontend/settings`` are in their own modules.

A LibreTranslate request is checked here, in the HTTP process, turned into native
``TranslateRequest``s and awaited through the handler LitServe registered for the native
``POST /translate``, so it joins the same queue and batches (no loopback HTTP call). As
LibreTranslate does, it takes JSON or form bodies, ignores fields it does not know, and answers
errors as ``{"error": "..."}`` with 400 (bad request) or 403 (bad key).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException  # FastAPI's is a subclass; a bad form raises Starlette's

from serve.catalog import Catalog, PairError
from serve.libretranslate.contract import ContractError, merge_detections
from serve.libretranslate.detect import Detector
from serve.libretranslate.fields import (
    PREFIX,
    LibreTranslateError,
    alternatives_field,
    key_field,
    read_body,
    string_field,
    texts_field,
)
from serve.libretranslate.languages import install_languages_route
from serve.libretranslate.markup import rebuild, split_html, texts_to_translate
from serve.libretranslate.schema import openapi
from serve.native.schemas import BOUND, Limits, TranslateRequest, TranslateResponse
from serve.ops.ratelimit import KEY_SCOPE
from serve.store.cache import TranslationCache

BEAM_SIZE = 5  # the native API's default


Native = Callable[[TranslateRequest], Awaitable[TranslateResponse]]


class LibreTranslate:
    """The routes' logic: key check, detection, HTML, and native requests for the segments."""

    def __init__(
        self, catalog: Catalog, detector: Detector, native: Native, api_key: str | None, limits: Limits
    ) -> None:
        self.catalog, self.detector, self.native, self.api_key = catalog, detector, native, api_key
        self.limits = limits

    def check_key(self, body: dict, request: Request) -> None:
        given = key_field(body)  # checked even when no key is set: the documented type holds
        if self.api_key is None:
            return
        given = given or request.headers.get("x-api-key") or ""
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise LibreTranslateError(403, "Invalid API key")

    def detect(self, text: str) -> list[dict]:
        return [{"language": code, "confidence": c} for code, c in self.detector.detect(text)]

    async def translate_segments(
        self, texts: list[str], source: str, target: str, n_best: int
    ) -> list[list[str]]:
        """n-best texts of each segment (native requests of at most --max-texts texts, concurrently)."""
        try:
            if source != target:
                self.catalog.route(source, target)
            elif source not in self.catalog.languages():
                raise PairError(
                    f"no model reads or writes {source}; pairs available: {self.catalog.describe_pairs()}"
                )
        except PairError as e:
            raise LibreTranslateError(400, str(e)) from None
        if not texts or source == target:  # LibreTranslate answers a text already in the target as is
            return [[text] for text in texts]
        step = self.limits.max_texts
        try:
            requests = [
                TranslateRequest(
                    texts=texts[i : i + step],
                    beam_size=max(n_best, min(BEAM_SIZE, self.limits.max_beam)),
                    n_best=n_best,
                    source=source,
                    target=target,
                )  # fmt: skip
                for i in range(0, len(texts), step)
            ]
        except ValidationError as e:
            message = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
            raise LibreTranslateError(400, f"Invalid request: {message}") from None
        responses = await asyncio.gather(*(self.native(r) for r in requests))
        return [[h.text for h in t.n_best] for response in responses for t in response.translations]

    async def translate(self, body: dict) -> dict:
        texts, as_list = texts_field(body, BOUND.get().limits)  # a key's own char_limit, if any
        source, target = string_field(body, "source"), string_field(body, "target")
        html = body.get("format", "text")
        if html not in ("text", "html"):
            raise LibreTranslateError(400, "Invalid request: format must be text or html")
        html = html == "html"
        alternatives = alternatives_field(body, self.limits.max_beam)
        pieces = [split_html(t) if html else [(t, True)] for t in texts]
        plain = [
            texts_to_translate(p) if html else ([t] if t.strip() else [])
            for t, p in zip(texts, pieces, strict=True)
        ]
        detected = None
        if source == "auto":
            detected = [self.detect(" ".join(p) or t)[0] for t, p in zip(texts, plain, strict=True)]
            sources = [d["language"] for d in detected]
        else:
            sources = [source] * len(texts)
        # one batch of segments per source language (auto may find several)
        groups = {lang: [i for i, s in enumerate(sources) if s == lang] for lang in dict.fromkeys(sources)}
        outs = await asyncio.gather(
            *(
                self.translate_segments(
                    [seg for i in members for seg in plain[i]], lang, target, 1 + alternatives
                )
                for lang, members in groups.items()
            )
        )
        found: list[list[list[str]]] = [[] for _ in texts]
        for members, out in zip(groups.values(), outs, strict=True):
            start = 0
            for i in members:
                found[i], start = out[start : start + len(plain[i])], start + len(plain[i])
        answers, alts = [], []
        for t, p, segs, outs in zip(texts, pieces, plain, found, strict=True):
            versions = [self._assemble(t, p, segs, outs, k, html) for k in range(1 + alternatives)]
            answers.append(versions[0])
            alts.append([v for v in dict.fromkeys(versions[1:]) if v != versions[0]])
        result: dict = {"translatedText": answers if as_list else answers[0]}
        if alternatives:
            result["alternatives"] = alts if as_list else alts[0]
        if detected is not None:
            result["detectedLanguage"] = detected if as_list else detected[0]
        return result

    @staticmethod
    def _assemble(text: str, pieces, segments: list[str], outs: list[list[str]], k: int, html: bool) -> str:
        """The k-th version of one text: each segment's k-th hypothesis (or its last, if fewer)."""
        if not segments:
            return text
        choice = {seg: out[min(k, len(out) - 1)] for seg, out in zip(segments, outs, strict=True)}
        if not html:
            return choice[segments[0]]
        return rebuild(pieces, lambda seg: choice[seg])


def install_libretranslate(
    app: FastAPI,
    catalog: Catalog,
    detector: Detector,
    api_key: str | None,
    limits: Limits,
    cache: TranslationCache | None = None,
) -> LibreTranslate:
    """The routes, at the root (``/translate`` by body, through ``LibreTranslateDispatch``, which
    the server installs among its middlewares) and under ``PREFIX``. With ``cache``
    (``--translation-cache``), a repeated translation is answered from it. Returns the routes'
    logic, for the other LibreTranslate routes (``suggest``, ``files_routes``)."""  # fmt: skip
    route = next(r for r in app.routes if getattr(r, "path", None) == "/translate")
    lt = LibreTranslate(catalog, detector, route.endpoint, api_key, limits)

    def guarded(work: Callable[[Request, dict], Awaitable[object]]):
        return guard(lt, work)

    async def translate(request: Request, body: dict) -> dict:
        if cache is None or not cache.applies(request.scope.get(KEY_SCOPE)):
            return await lt.translate(body)
        asked = {k: body.get(k) for k in ("q", "source", "target", "format", "alternatives")}
        found = cache.get(asked)
        if found is None:
            found = await lt.translate(body)
            cache.put(asked, found)
        return found

    async def detect(request: Request, body: dict) -> list[dict]:
        texts, as_list = texts_field(body, BOUND.get().limits)
        if as_list:  # one list for all the texts, as LibreTranslate's detect_languages
            return merge_detections(texts, [lt.detector.detect(t) for t in texts])
        return lt.detect(texts[0])

    for path, work in ((PREFIX + "/translate", translate), ("/detect", detect), (PREFIX + "/detect", detect)):
        name = path.rsplit("/", 1)[1]
        app.add_api_route(
            path, guarded(work), methods=["POST"], **openapi(name, catalog, limits, api_key is not None)
        )
    install_languages_route(app, catalog, PREFIX + "/languages")
    return lt


def guard(lt: LibreTranslate, work: Callable[[Request, dict], Awaitable[object]]):
    """An endpoint that reads the body (JSON or form), checks the key, and answers ``work``'s result
    as JSON, or its refusal as LibreTranslate's ``{"error": ...}``."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request)
            lt.check_key(body, request)
            answer = await work(request, body)
            return answer if isinstance(answer, Response) else JSONResponse(answer)
        except LibreTranslateError as e:
            return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)
        except ContractError as e:
            return JSONResponse(e.body(), status_code=e.status)
        except HTTPException as e:  # from the native handler, the body size limit, a malformed form
            detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
            return JSONResponse({"error": detail}, status_code=e.status_code)

    return endpoint
