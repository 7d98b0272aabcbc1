"""Several models in one server, pivoting, and the LibreTranslate API: a real ``python -m serve``
with three tiny models (en->fr, fr->en, en->de), the real ``libretranslatepy`` client, raw HTTP."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI
from test_serve import MAX_LENGTH, Server, failed_starts, start_server

from seq2seq.translator import Translator
from serve.catalog import Catalog
from serve.libretranslate.markup import split_html
from serve.worker.api import TranslatorAPI
from serve.worker.checkpoint import check_checkpoint
from serve.worker.jobs import DecodeOptions, Job

KEY = "k3y"
LANGUAGES = [
    {"code": "en", "name": "English", "targets": ["de", "fr"]},
    {"code": "fr", "name": "French", "targets": ["de", "en"]},  # fr->de through English
]
PAIRS = "pairs available: en->de, en->fr, fr->de (via en), fr->en"
EN = ["twelve", "three hundred and five", "Monday, December 5, 2050"]
FR = ["douze", "trois cent cinq"]


@pytest.fixture(scope="module")
def server(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("models")  # two files by name, one through --checkpoint DIR
    for pair in ("en-fr", "fr-en"):
        (folder / f"{pair}.ckpt").symlink_to(tiny_checkpoints[pair])
    s = start_server(None, tmp_path_factory.mktemp("lt"), "--checkpoint", str(folder), "--checkpoint",
                     str(tiny_checkpoints["en-de"]), "--threads", "1", "--api-key", KEY)  # fmt: skip
    yield s
    s.stop()


@pytest.fixture(scope="module")
def translators(tiny_checkpoints: dict[str, Path]) -> dict[str, Translator]:
    return {pair: Translator.from_checkpoint(path) for pair, path in tiny_checkpoints.items()}


def best(translator: Translator, texts: list[str], **options) -> list[str]:
    return [t.text for t in translator.translate(texts, max_length=MAX_LENGTH, **options)]


def native(server: Server, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/translate", json=body, headers={"X-API-Key": KEY}, timeout=60)


def lt(server: Server, path: str = "/translate", **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=60, **kwargs)


# -- the native API over several models -----------------------------------------------------
def test_languages_info_and_direct_pairs(server: Server, translators) -> None:
    assert httpx.get(f"{server.url}/languages").json() == LANGUAGES  # open, as LibreTranslate's
    info = httpx.get(f"{server.url}/info", headers={"X-API-Key": KEY}).json()["model"]
    assert sorted((m["src_lang"], m["tgt_lang"]) for m in info["models"]) == [
        ("en", "de"),
        ("en", "fr"),
        ("fr", "en"),
    ]
    for src, tgt, texts in (("en", "fr", EN), ("fr", "en", FR), ("en", "de", EN)):
        r = native(server, texts=texts, source=src, target=tgt)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["src_lang"], body["tgt_lang"], body["pivot"]) == (src, tgt, None)
        assert [t["text"] for t in body["translations"]] == best(translators[f"{src}-{tgt}"], texts)
    for pair in ({}, {"source": "en"}, {"target": "en", "source": "de"}):  # ambiguous, or no such pair
        r = native(server, text="twelve", **pair)
        assert r.status_code == 422 and PAIRS in r.text


def test_pivot_through_english(server: Server, translators) -> None:
    r = native(server, texts=FR, source="fr", target="de", beam_size=3, n_best=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["src_lang"], body["tgt_lang"], body["pivot"]) == ("fr", "de", "en")
    assert body["model"] == "fr-en.ckpt + last.ckpt"  # the files' names
    english = best(translators["fr-en"], FR, beam_size=3)
    german = translators["en-de"].translate(english, beam_size=3, n_best=2, max_length=MAX_LENGTH)
    assert [t["pivot_text"] for t in body["translations"]] == english
    assert [[h["text"] for h in t["n_best"]] for t in body["translations"]] == [
        [h.text for h in t.hypotheses] for t in german
    ]


def test_concurrent_requests_for_every_pair_and_both_apis(server: Server, translators) -> None:
    """24 simultaneous requests over four pairs (one pivoted), native and LibreTranslate mixed."""
    texts = {"en": EN, "fr": FR}
    pairs = [("en", "fr"), ("fr", "en"), ("fr", "de"), ("en", "de")] * 6
    jobs = [(src, tgt, texts[src][k % len(texts[src])], k % 2 == 0) for k, (src, tgt) in enumerate(pairs)]

    def reference(src: str, tgt: str, text: str) -> str:
        if (src, tgt) == ("fr", "de"):
            return best(translators["en-de"], best(translators["fr-en"], [text]))[0]
        return best(translators[f"{src}-{tgt}"], [text])[0]

    async def run_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120, headers={"X-API-Key": KEY}) as client:
            return await asyncio.gather(*(
                client.post("/translate", json={"text": text, "source": src, "target": tgt} if native
                            else {"q": text, "source": src, "target": tgt})
                for src, tgt, text, native in jobs
            ))  # fmt: skip

    for (src, tgt, text, native), r in zip(jobs, asyncio.run(run_all()), strict=True):
        assert r.status_code == 200, r.text
        got = r.json()["translations"][0]["text"] if native else r.json()["translatedText"]
        assert got == reference(src, tgt, text), (src, tgt, text, native)


def test_worker_batches_by_model_and_pivots_in_two_legs(tiny_checkpoints, translators) -> None:
    """In-process: a pivoting job shares the fr->en call with a direct fr->en job of equal options."""
    catalog = Catalog.from_metadata([check_checkpoint(str(p)) for p in tiny_checkpoints.values()])
    api = TranslatorAPI(catalog, threads=1)  # setup() sets this process's torch threads: keep conftest's 1
    api.setup("cpu")
    calls = []

    def counting(key: str, real):
        def translate(texts, **options):
            calls.append((key, len(texts)))
            return real(texts, **options)

        return translate

    for key, model in api.translators.items():
        model.translate = counting(key, model.translate)
    greedy = DecodeOptions(1, 1, MAX_LENGTH, None, False)
    jobs = [Job(FR, greedy, catalog.route("fr", "de")), Job(FR[:1], greedy, catalog.route("fr", "en")),
            Job(EN, greedy, catalog.route("en", "fr"))]  # fmt: skip
    results = api.predict(jobs)
    assert sorted(calls) == [("en-de", 2), ("en-fr", 3), ("fr-en", 3)]
    english = best(translators["fr-en"], FR, beam_size=1)
    assert results[0].pivot_texts == english
    assert [t.text for t in results[0].translations] == best(translators["en-de"], english, beam_size=1)
    assert [t.text for t in results[1].translations] == english[:1]
    assert [t.text for t in results[2].translations] == best(translators["en-fr"], EN, beam_size=1)


# -- LibreTranslate: the real client -----------------------------------------------------------
@pytest.mark.parametrize("base", ["", "/libretranslate"])
def test_libretranslatepy_client(server: Server, translators, base: str) -> None:
    client = LibreTranslateAPI(server.url + base, api_key=KEY)
    assert client.languages() == LANGUAGES
    assert client.translate(EN[1], "en", "fr") == best(translators["en-fr"], EN[1:2])[0]
    assert (
        client.translate(FR[0], "fr", "de")
        == best(translators["en-de"], best(translators["fr-en"], FR[:1]))[0]
    )
    detected = client.detect(FR[1])
    assert detected[0]["language"] == "fr" and detected[0]["confidence"] > 90
    assert [d["language"] for d in client.detect(EN[2])][:1] == ["en"]


# -- LibreTranslate: raw HTTP ------------------------------------------------------------------
def test_form_json_lists_alternatives_and_auto(server: Server, translators) -> None:
    form = lt(server, data={"q": EN[0], "source": "en", "target": "fr", "api_key": KEY, "secret": "x"})
    as_json = lt(server, json={"q": EN[0], "source": "en", "target": "fr", "api_key": KEY, "apiKey": "y"})
    assert form.status_code == as_json.status_code == 200, form.text + as_json.text
    assert form.json() == as_json.json() == {"translatedText": best(translators["en-fr"], EN[:1])[0]}

    r = lt(server, json={"q": EN, "source": "en", "target": "fr", "alternatives": 2, "api_key": KEY})
    assert r.status_code == 200, r.text
    reference = translators["en-fr"].translate(EN, beam_size=5, n_best=3, max_length=MAX_LENGTH)
    assert r.json()["translatedText"] == [t.text for t in reference]
    assert r.json()["alternatives"] == [
        list(dict.fromkeys(h.text for h in t.hypotheses[1:] if h.text != t.text)) for t in reference
    ]
    form = lt(server, data={"q": EN, "source": "en", "target": "fr", "alternatives": "2", "api_key": KEY})
    assert form.json() == r.json()  # a form's digits, as LibreTranslate reads them
    below = lt(server, json={"q": EN[0], "source": "en", "target": "fr", "alternatives": -3, "api_key": KEY})
    assert below.json() == as_json.json()  # below 0 means 0, as in LibreTranslate

    r = lt(server, json={"q": [FR[0], EN[0]], "source": "auto", "target": "en", "api_key": KEY})
    assert r.status_code == 200, r.text
    assert [d["language"] for d in r.json()["detectedLanguage"]] == ["fr", "en"]
    assert r.json()["translatedText"] == [best(translators["fr-en"], FR[:1])[0], EN[0]]  # en->en: as is


def test_html_keeps_markup_byte_for_byte(server: Server, translators) -> None:
    doc = ('<p class="a"  data-x=\'1\'>twelve &amp; <b>three hundred and five</b><br/>\n'
           '<code>twelve</code><span translate="no">twelve</span>&nbsp;<!-- twelve --></p>')  # fmt: skip
    r = lt(server, json={"q": doc, "source": "en", "target": "fr", "format": "html", "api_key": KEY})
    assert r.status_code == 200, r.text
    t12, t305 = (html.escape(t, quote=False) for t in best(translators["en-fr"], EN[:2]))
    assert r.json()["translatedText"] == (
        f"<p class=\"a\"  data-x='1'>{t12} &amp; <b>{t305}</b><br/>\n"
        '<code>twelve</code><span translate="no">twelve</span>&nbsp;<!-- twelve --></p>'
    )
    for broken in ("<p>twelve <b", "</i>twelve<p <<>>", "<div><p>twelve</div", "&#xZZ; <!-- twelve", "a < b"):
        r = lt(server, json={"q": broken, "source": "en", "target": "fr", "format": "html", "api_key": KEY})
        assert r.status_code == 200, r.text
        assert "".join(raw for raw, _ in split_html(broken)) == broken  # the cut loses nothing


def test_keys_pairs_and_bad_requests(server: Server) -> None:
    body = {"q": "twelve", "source": "en", "target": "fr"}
    for extra, headers in (({}, {}), ({"api_key": "wrong"}, {}), ({}, {"X-API-Key": "wrong"})):
        r = lt(server, json={**body, **extra}, headers=headers)
        assert r.status_code == 403 and r.json() == {"error": "Invalid API key"}
    assert lt(server, json=body, headers={"X-API-Key": KEY}).status_code == 200  # the header, as natively
    for source, target in (("de", "en"), ("xx", "xx"), ("en", "es")):
        r = lt(server, json={**body, "source": source, "target": target, "api_key": KEY})
        assert r.status_code == 400 and PAIRS in r.json()["error"]
    # a text already in the target language comes back as is, as in LibreTranslate
    same = lt(server, json={**body, "source": "en", "target": "en", "api_key": KEY})
    assert same.status_code == 200 and same.json() == {"translatedText": "twelve"}


def test_openapi_documents_exactly_the_pairs_answered(server: Server) -> None:
    """The documented (source, target) pairs are those GET /languages lists, a language into itself
    and "auto" into what every detectable language reaches; each answers 200, any other 400."""
    doc = httpx.get(f"{server.url}/openapi.json", headers={"X-API-Key": KEY}).json()
    operation = doc["paths"]["/libretranslate/translate"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert {"200", "400", "403", "413"} <= set(operation["responses"])  # 403: a key is set
    root = doc["paths"]["/translate"]["post"]  # the root takes both APIs' bodies and answers both errors
    assert {"401", "403", "422"} <= set(root["responses"])
    assert root["requestBody"]["content"]["application/x-www-form-urlencoded"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    documented = {(p["properties"]["source"]["const"], p["properties"]["target"]["const"])
                  for p in schema["allOf"][0]["anyOf"]}  # fmt: skip
    codes = ["de", "en", "fr"]
    listed = {(lang["code"], t) for lang in LANGUAGES for t in lang["targets"]}
    auto = {("auto", t) for t in codes if all((s, t) in listed or s == t for s in ("en", "fr"))}
    assert documented == listed | {(c, c) for c in codes} | auto
    for source in ["auto", *codes]:
        for target in codes:
            body = {"q": "twelve", "source": source, "target": target, "api_key": KEY}
            r = lt(server, data=body if source == "fr" else None, json=None if source == "fr" else body)
            assert r.status_code == (200 if (source, target) in documented else 400), (source, target, r.text)


JSON = {"content-type": "application/json"}
BAD = {
    "empty-q": ({"json": {"q": "", "source": "en", "target": "fr"}}, "missing q"),
    "no-q-form": ({"data": {"q": "", "source": "en", "target": "fr"}}, "missing q"),
    "empty-list": ({"json": {"q": [], "source": "en", "target": "fr"}}, "missing q"),
    "q-number": ({"json": {"q": 5, "source": "en", "target": "fr"}}, "q must be"),
    "q-list-of-numbers": ({"json": {"q": [5], "source": "en", "target": "fr"}}, "q must be"),
    "no-target": ({"json": {"q": "twelve", "source": "en"}}, "missing target"),
    "format": ({"json": {"q": "twelve", "source": "en", "target": "fr", "format": "pdf"}}, "format"),
    "alternatives": (
        {"data": {"q": "twelve", "source": "en", "target": "fr", "alternatives": "x"}},
        "alternatives",
    ),
    "too-many-alternatives": (
        {"json": {"q": "1", "source": "en", "target": "fr", "alternatives": 10}},
        "alternatives",
    ),
    "empty-item": ({"json": {"q": ["twelve", ""], "source": "en", "target": "fr"}}, "empty"),
    "key-number": ({"json": {"q": "twelve", "source": "en", "target": "fr", "api_key": 5}}, "api_key"),
    "alternatives-fraction": (
        {"json": {"q": "1", "source": "en", "target": "fr", "alternatives": 1.5}},
        "alternatives",
    ),
    "too-long": ({"json": {"q": "a" * 1001, "source": "en", "target": "fr"}}, "limit is 1000"),
    "too-many": ({"json": {"q": ["a"] * 65, "source": "en", "target": "fr"}}, "limit is 64"),
    "surrogate": ({"content": b'{"q": "\\ud800", "source": "en", "target": "fr"}'}, "Unicode"),
    "bad-json": ({"content": b'{"q": "a", ', "headers": {"content-type": "application/json"}}, "JSON"),
    "not-utf8": ({"content": b'{"q": "\xff", "source": "en", "target": "fr"}'}, "JSON"),
    "array": ({"json": ["q"]}, "object"),
    "deep-list": ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, "nested more than 200"),
    "deep-object": ({"content": b'{"q": ' * 5000 + b'"a"' + b"}" * 5000, "headers": JSON}, "nested"),
}


def _applies(case: str, path: str) -> bool:
    """Root /translate sends only recognisable LibreTranslate bodies here (the native API answers
    the rest, see test_serve); /detect reads only q."""
    if path == "/translate":
        return case not in ("bad-json", "array", "not-utf8", "deep-list", "deep-object")  # native's
    if path == "/detect":
        return case not in ("no-target", "format") and "alternatives" not in case
    return True


@pytest.mark.parametrize(
    ("case", "path"),
    [(c, p) for p in ("/translate", "/libretranslate/translate", "/detect") for c in BAD if _applies(c, p)],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(server: Server, case: str, path: str) -> None:
    request, words = dict(BAD[case][0]), BAD[case][1]
    r = lt(server, path, headers={"X-API-Key": KEY, **request.pop("headers", {})}, **request)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"], r.text
    good = lt(server, json={"q": "twelve", "source": "en", "target": "fr", "api_key": KEY})
    assert good.status_code == 200 and good.json()["translatedText"]


def test_startup_refuses_two_models_of_one_pair_and_an_empty_folder(tiny_checkpoints, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    runs = {
        "same-pair": [
            "--checkpoint",
            str(tiny_checkpoints["en-fr"]),
            "--checkpoint",
            str(tiny_checkpoints["en-fr"]),
        ],
        "empty-folder": ["--checkpoint", str(tiny_checkpoints["fr-en"]), "--checkpoint", str(empty)],
    }
    results = failed_starts(runs)
    for name, words in (("same-pair", "both translate en to fr"), ("empty-folder", "holds no *.ckpt")):
        code, stderr = results[name]
        assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("seq2seq-serve: error:") and words in stderr, stderr


@pytest.mark.parametrize("path", ["/translate", "/libretranslate/translate", "/detect"])
def test_oversize_body_gets_413(server: Server, path: str) -> None:
    big = b'{"q": "' + b"a" * 600_000 + b'", "source": "en", "target": "fr"}'
    r = lt(server, path, content=big, headers={"content-type": "application/json", "X-API-Key": KEY})
    assert r.status_code == 413 and "too large" in r.text, r.text
    assert lt(server, json={"q": "twelve", "source": "en", "target": "fr", "api_key": KEY}).status_code == 200
