"""Which requests ``FastTranslate`` (serve/fastpath.py) answers itself and which reach FastAPI,
body intact. Its handler here is a fake (as search is tested with a fake model); the real server's
answers are compared with FastAPI's own in tests/test_serve.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from serve.api import http_error
from serve.fastpath import FastTranslate
from serve.schemas import Hypothesis, TranslateRequest, TranslateResponse, TranslationOut


def answer(request: TranslateRequest) -> TranslateResponse:
    """What the fake handler answers: the request's own text, reversed, as the translation."""
    text = (request.text or "")[::-1]
    out = TranslationOut(
        text=text, score=-1.5, tokens=[text], n_best=[Hypothesis(text=text, score=-1.5, tokens=[text])]
    )
    return TranslateResponse(translations=[out], src_lang="de", tgt_lang="en", model="fake.ckpt")


class Setup:
    """A FastAPI app behind ``FastTranslate``, recording what reaches each side."""

    def __init__(self, fail: HTTPException | None = None, key: str | None = None) -> None:
        self.inner_bodies: list[bytes] = []
        self.handled: list[TranslateRequest] = []
        inner = FastAPI()

        @inner.post("/translate")
        async def route(request: Request) -> JSONResponse:
            self.inner_bodies.append(await request.body())
            return JSONResponse({"from": "fastapi"})

        async def handle(request: TranslateRequest) -> TranslateResponse:
            self.handled.append(request)
            if fail is not None:
                raise fail
            return answer(request)

        async def authorize(request: Request) -> None:
            if key is not None and request.headers.get("x-api-key") != key:
                raise HTTPException(401, "missing or wrong API key")

        self.app = FastTranslate(inner, "/translate", "the-route", handle, authorize)

    def call(
        self, body: bytes, content_type: str | None = "application/json", method: str = "POST",
        path: str = "/translate", chunks: int = 1, headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes, dict]:  # fmt: skip
        """One request through the ASGI app, its body in ``chunks`` messages: status, headers, body, scope."""
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if content_type is not None:
            raw.append((b"content-type", content_type.encode()))
        scope = {
            "type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": raw, "http_version": "1.1", "scheme": "http", "root_path": "",
            "server": ("testserver", 80), "client": ("127.0.0.1", 1234),
        }  # fmt: skip
        size = -(-len(body) // chunks) if body else 1
        parts = [body[i : i + size] for i in range(0, max(len(body), 1), size)]
        incoming = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
        ]
        sent: list[dict] = []

        async def receive() -> dict:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        asyncio.run(self.app(scope, receive, send))
        start = sent[0]
        out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:]), scope


def test_a_valid_request_is_answered_without_fastapi_in_fastapis_bytes() -> None:
    setup = Setup()
    body = json.dumps({"text": "Ein Mann fährt Rad.", "beam_size": 2}).encode()
    for chunks in (1, 3):
        status, headers, out, scope = setup.call(body, chunks=chunks)
        assert status == 200 and setup.inner_bodies == []
        want = answer(TranslateRequest(text="Ein Mann fährt Rad.", beam_size=2))
        assert out == want.model_dump_json().encode()  # what FastAPI writes for the response model
        assert headers == {"content-length": str(len(out)), "content-type": "application/json"}
        assert scope["route"] == "the-route"  # the metrics label it by its route
    assert [r.beam_size for r in setup.handled] == [2, 2]
    status, _, _, _ = setup.call(body, content_type="application/json; charset=utf-8")
    assert status == 200 and setup.inner_bodies == []


@pytest.mark.parametrize(
    "case",
    ["invalid", "not-json", "bom", "no-content-type", "form", "get", "other-path", "chunked-invalid"],
)
def test_anything_else_reaches_fastapi_with_its_body(case: str) -> None:
    setup = Setup()
    body = json.dumps({"text": "Hallo", "beam_size": "2"}).encode()  # strict: "2" is not a beam size
    kwargs: dict = {}
    if case == "not-json":
        body = b'{"text": "Hallo",'
    elif case == "bom":  # FastAPI reads a UTF-8 BOM; pydantic's JSON parser does not
        body = b"\xef\xbb\xbf" + json.dumps({"text": "Hallo"}).encode()
    elif case == "no-content-type":
        body, kwargs = json.dumps({"text": "Hallo"}).encode(), {"content_type": None}
    elif case == "form":
        body, kwargs = b"text=Hallo", {"content_type": "application/x-www-form-urlencoded"}
    elif case == "get":
        kwargs = {"method": "GET"}
    elif case == "other-path":
        body, kwargs = json.dumps({"text": "Hallo"}).encode(), {"path": "/other"}
    elif case == "chunked-invalid":
        kwargs = {"chunks": 4}
    status, _, out, _ = setup.call(body, **kwargs)
    if case in ("get", "other-path"):  # no route of the inner app: FastAPI's 405 and 404
        assert status == {"get": 405, "other-path": 404}[case] and setup.inner_bodies == []
    else:
        assert status == 200 and json.loads(out) == {"from": "fastapi"}
        assert setup.inner_bodies == [body]  # replayed whole, in order
    assert setup.handled == []


def test_errors_are_answered_as_the_apps_error_handler_answers_them() -> None:
    died = HTTPException(503, "the inference worker died", headers={"Retry-After": "5"})
    setup = Setup(fail=died)
    status, headers, out, _ = setup.call(json.dumps({"text": "Hallo"}).encode())
    want = asyncio.run(http_error(None, died))  # type: ignore[arg-type]
    assert (status, out) == (503, want.body) and headers["retry-after"] == "5"
    timed_out = Setup(fail=HTTPException(504, "Request timed out"))
    status, _, out, _ = timed_out.call(json.dumps({"text": "Hallo"}).encode())
    assert status == 504 and "--timeout" in json.loads(out)["detail"]  # our handler's words

    keyed = Setup(key="s3cret")
    body = json.dumps({"text": "Hallo"}).encode()
    status, _, out, _ = keyed.call(body, headers={"X-API-Key": "wrong"})
    assert status == 401 and json.loads(out) == {"detail": "missing or wrong API key"}
    assert keyed.handled == []
    status, _, _, _ = keyed.call(body, headers={"X-API-Key": "s3cret"})
    assert status == 200 and len(keyed.handled) == 1
