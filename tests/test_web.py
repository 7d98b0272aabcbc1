"""The translation page in a real headless Chromium (Selenium), against a real server and tiny model.

One server (with an API key) and one browser serve every test here. Without Chromium the tests
skip and say why; ``.ci/run`` sets SEQ2SEQ_REQUIRE_BROWSER=1, which turns that skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from test_serve import Server, start_server

KEY = "web-k3y"
NAMES = {"en": "English", "fr": "French", "de": "German"}
MAX_CHARS = 80  # --max-chars: the page must refuse longer lines with this number
SENTENCES = ["seven dogs run in the park", "twelve <b>cats</b> sleep"]  # the tag must stay text
WAIT = 120  # seconds; generous for a busy 2-core machine, met in about a second when idle


def _screenshot_module():
    """scripts/screenshot.py: the tests start Chromium exactly as the README's screenshot does."""
    spec = importlib.util.spec_from_file_location("screenshot", ROOT / "scripts" / "screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shot = _screenshot_module()


@pytest.fixture(scope="module")
def browser():
    reason = shot.browser_missing()
    if reason is not None:
        if os.environ.get("SEQ2SEQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here (SEQ2SEQ_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    driver = shot.chromium(1100, 900)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """en->fr, fr->en and en->de: several pairs to choose from, and fr->de through English."""
    models = [arg for path in tiny_checkpoints.values() for arg in ("--checkpoint", str(path))]
    tmp = tmp_path_factory.mktemp("web")
    args = ("--api-key", KEY, "--threads", "1", "--max-chars", str(MAX_CHARS), "--log-level", "info",
            "--suggestions", "--suggestions-db-path", str(tmp / "suggestions.db"), "--files-dir", str(tmp / "files"))  # fmt: skip
    s = start_server(None, tmp, *models, *args)
    s.suggestions = tmp / "suggestions.db"
    yield s
    s.stop()
    assert KEY not in s.log.read_text(errors="replace"), "the API key must never be logged"


def by_id(driver, name: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def all_of(driver, css: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def wait_for(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition, message)


def error_shown(driver, words: str):
    """Wait until the page's error box says ``words``; return its text."""
    wait_for(driver, lambda d: words in by_id(d, "error").text, f"no error saying {words!r}")
    assert by_id(driver, "error").is_displayed()
    return by_id(driver, "error").text


def open_page(driver, server: Server, key: str | None) -> None:
    """Load the page afresh with ``key`` (or none) in sessionStorage, as a returning tab would."""
    driver.get(f"{server.url}/static/style.css")  # same origin, so sessionStorage can be set first
    driver.execute_script(
        "sessionStorage.clear(); if (arguments[0]) sessionStorage.setItem('seq2seq-api-key', arguments[0])",
        key,
    )
    driver.get(f"{server.url}/")
    if key is not None:  # the languages and limits come from /languages and /info
        wait_for(driver, lambda d: by_id(d, "source").get_attribute("value"), "no source language")
        wait_for(driver, lambda d: by_id(d, "beam").get_attribute("max"), "no limits from /info")


def fill(driver, name: str, value: str) -> None:
    field = by_id(driver, name)
    field.clear()
    field.send_keys(value)


def choose(driver, source: str, target: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, "source")).select_by_value(source)
    Select(by_id(driver, "target")).select_by_value(target)


def options(driver) -> list[list[str]]:
    """The texts of the source and the target selector's options."""
    return driver.execute_script(
        "return ['source', 'target'].map(id => [...document.getElementById(id).options].map(o => o.text))"
    )


def api_translate(server: Server, **payload) -> dict:
    r = httpx.post(f"{server.url}/translate", json=payload, headers={"X-API-Key": KEY}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def translated(browser, server: Server) -> list[dict]:
    """Two sentences typed on the page and translated with Ctrl+Enter; the API's own answer."""
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, KEY)
    choose(browser, "en", "fr")
    fill(browser, "beam", "4")
    fill(browser, "nbest", "3")
    fill(browser, "text", "\n".join([SENTENCES[0], "", SENTENCES[1]]))  # blank lines are skipped
    by_id(browser, "text").send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(browser, lambda d: "Translated 2 sentences" in by_id(d, "status").text, "no translation")
    payload = {"texts": SENTENCES, "beam_size": 4, "n_best": 3, "return_attention": True}
    return api_translate(server, **payload, source="en", target="fr")["translations"]


def test_page_shows_the_apis_translations(browser, translated: list[dict]) -> None:
    assert options(browser)[0] == ["English (en)", "French (fr)"]  # from GET /languages
    items = all_of(browser, "#sentences > li")
    assert [item.find_element("css selector", ".source").text for item in items] == SENTENCES
    assert [item.find_element("css selector", ".translation").text for item in items] == [
        t["text"] for t in translated
    ]
    assert all_of(browser, "#sentences b") == []  # "<b>" was shown as text, not made an element
    for item, expected in zip(items, translated, strict=True):
        score = item.find_element("css selector", ".score").get_attribute("data-score")
        assert float(score) == pytest.approx(expected["score"], abs=1e-6)
        alternatives = item.find_elements("css selector", ".nbest li")
        assert len(alternatives) == 3
        shown = [
            (a.find_element("css selector", ".alt-text").get_attribute("textContent"),
             float(a.find_element("css selector", ".alt-score").get_attribute("data-score")))
            for a in alternatives
        ]  # fmt: skip
        assert shown == [(h["text"], pytest.approx(h["score"], abs=1e-6)) for h in expected["n_best"]]


def test_copy_button_copies_the_translations(browser, server: Server, translated: list[dict]) -> None:
    permissions = ["clipboardReadWrite", "clipboardSanitizedWrite"]
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": server.url, "permissions": permissions})
    by_id(browser, "copy").click()
    wait_for(browser, lambda d: by_id(d, "status").text == "Copied 2 translations.", "copy failed")
    pasted = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
    assert pasted == "\n".join(t["text"] for t in translated)


def test_heatmap_has_a_row_per_target_token_and_a_column_per_source_token(
    browser, translated: list[dict]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    second = translated[1]
    all_of(browser, ".attention-button")[1].click()
    wait_for(browser, lambda d: all_of(d, ".attention-button")[1].get_attribute("aria-pressed") == "true", "")
    rows = [e.get_attribute("textContent") for e in all_of(browser, "#heatmap .hm-row-label")]
    cols = [e.get_attribute("textContent") for e in all_of(browser, "#heatmap .hm-col-label")]
    assert rows == [*second["tokens"], "</s>"]
    assert cols == [*second["source_tokens"], "</s>"]
    cells = all_of(browser, "#heatmap rect.hm-cell")
    assert len(cells) == len(rows) * len(cols)
    weights = [[0.0] * len(cols) for _ in rows]
    for i, j, weight in browser.execute_script(  # one round trip, not three per cell
        "return [...arguments[0]].map(c => ['row', 'col', 'weight'].map(k => Number(c.dataset[k])))", cells
    ):
        weights[i][j] = weight
    assert weights == [[pytest.approx(w, abs=1e-6) for w in row] for row in second["attention"]]

    i, j = len(rows) // 2, len(cols) // 2
    ActionChains(browser).move_to_element(cells[i * len(cols) + j]).perform()  # hover shows the weight
    readout = f"{rows[i]} ← {cols[j]}: {second['attention'][i][j]:.3f}"
    wait_for(browser, lambda d: by_id(d, "cell").text == readout, f"hover did not show {readout!r}")
    by_id(browser, "heatmap").find_element("css selector", "svg").send_keys(Keys.ARROW_DOWN)  # keyboard
    below = f"{rows[i + 1]} ← {cols[j]}: {second['attention'][i + 1][j]:.3f}"
    wait_for(browser, lambda d: by_id(d, "cell").text == below, f"arrow key did not show {below!r}")


def test_api_key_flow(browser, server: Server) -> None:
    open_page(browser, server, None)
    error_shown(browser, "needs an API key")  # /info answered 401
    fill(browser, "text", SENTENCES[0])
    by_id(browser, "translate").click()
    error_shown(browser, "needs an API key")
    assert by_id(browser, "results").get_attribute("hidden") is not None

    fill(browser, "api-key", "wrong")
    by_id(browser, "translate").click()
    error_shown(browser, "refused this API key")
    assert by_id(browser, "results").get_attribute("hidden") is not None

    fill(browser, "api-key", KEY)
    by_id(browser, "translate").click()
    payload = {"texts": [SENTENCES[0]], "beam_size": 5, "n_best": 3, "return_attention": True}
    expected = api_translate(server, **payload, source="en", target="de")["translations"]  # the first pair
    wait_for(browser, lambda d: "Translated 1 sentence" in by_id(d, "status").text, "no translation")
    assert by_id(browser, "error").get_attribute("hidden") is not None
    assert all_of(browser, "#sentences .translation")[0].text == expected[0]["text"]
    assert browser.execute_script("return sessionStorage.getItem('seq2seq-api-key')") == KEY
    browser.refresh()  # the key is kept for this tab
    wait_for(browser, lambda d: by_id(d, "api-key").get_attribute("value") == KEY, "key not restored")


def test_every_pair_can_be_chosen_and_a_pivot_is_shown(browser, server: Server) -> None:
    languages = httpx.get(f"{server.url}/languages").json()
    assert [(lang["code"], lang["targets"]) for lang in languages] == [
        ("en", ["de", "fr"]),
        ("fr", ["de", "en"]),
    ]
    open_page(browser, server, KEY)
    for lang in languages:  # each source offers its own targets
        choose(browser, lang["code"], lang["targets"][0])
        names = [f"{NAMES[code]} ({code})" for code in lang["targets"]]
        assert options(browser) == [[f"{x['name']} ({x['code']})" for x in languages], names]

    choose(browser, "fr", "de")  # no fr->de model: through English
    fill(browser, "text", "douze")
    by_id(browser, "translate").click()
    wait_for(browser, lambda d: "Translated 1 sentence" in by_id(d, "status").text, "no translation")
    body = api_translate(server, texts=["douze"], beam_size=5, n_best=3, return_attention=True,
                         source="fr", target="de")  # fmt: skip
    expected = body["translations"][0]
    assert body["pivot"] == "en" and expected["pivot_text"]
    assert by_id(browser, "sentences").find_element("css selector", ".translation").text == expected["text"]
    assert by_id(browser, "sentences").find_element("css selector", ".pivot").text == (
        f"via English: {expected['pivot_text']}"
    )
    assert f'"{expected["pivot_text"]}"' in by_id(browser, "attention-pivot").text
    cols = [e.get_attribute("textContent") for e in all_of(browser, "#heatmap .hm-col-label")]
    assert cols == [*expected["source_tokens"], "</s>"]  # the English the second model read


def test_errors_are_shown_in_words(browser, server: Server) -> None:
    open_page(browser, server, KEY)
    fill(browser, "text", SENTENCES[0])
    fill(browser, "beam", "99")  # past --max-beam: the server's 422, on the page
    by_id(browser, "translate").click()
    assert "(422): beam_size 99 is over the limit of 10" in error_shown(browser, "422")

    fill(browser, "beam", "2")
    fill(browser, "text", "a" * (MAX_CHARS + 5))  # refused on the page, with /info's limit
    by_id(browser, "translate").click()
    message = error_shown(browser, f"at most {MAX_CHARS} per sentence")
    assert f"{MAX_CHARS + 5} characters" in message
    assert by_id(browser, "status").text == ""  # nothing was sent


def test_docs_render_offline_and_the_page_fits_a_phone(browser, server: Server) -> None:
    browser.get(f"{server.url}/docs")
    wait_for(browser, lambda d: all_of(d, ".opblock-summary-path"), "Swagger UI rendered no operation")
    operations = {
        (op.find_element("css selector", ".opblock-summary-method").text,
         op.find_element("css selector", ".opblock-summary-path").get_attribute("data-path"))
        for op in all_of(browser, ".opblock")
    }  # fmt: skip
    assert {("POST", "/translate"), ("GET", "/info"), ("GET", "/health")} <= operations
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server.url) for url in loaded), loaded  # nothing from a CDN

    browser.set_window_size(375, 800)
    try:
        open_page(browser, server, KEY)
        fill(browser, "text", SENTENCES[0])
        by_id(browser, "translate").click()
        wait_for(browser, lambda d: "Translated 1 sentence" in by_id(d, "status").text, "no translation")
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(server.url) for url in loaded), loaded
        assert "default-src 'self'" in httpx.get(f"{server.url}/").headers["content-security-policy"]
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page is wider than a phone's window: {width}"
        labels = browser.execute_script(
            "return [...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"
        )
        assert labels == [], f"fields without a label: {labels}"
    finally:
        browser.set_window_size(1100, 900)


def test_file_tab_uploads_and_links_the_translation(browser, server: Server, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    from serve.files import parse_document

    settings = httpx.get(f"{server.url}/frontend/settings").json()
    open_page(browser, server, KEY)
    wait_for(browser, lambda d: by_id(d, "tab-file").is_displayed(), "no file tab though files are on")
    by_id(browser, "tab-file").click()
    assert by_id(browser, "file-pane").is_displayed() and not by_id(browser, "text-pane").is_displayed()
    assert by_id(browser, "file").get_attribute("accept") == ",".join(settings["supportedFilesFormat"])
    document = tmp_path / "notes.srt"
    document.write_text(
        f"1\n00:00:01,000 --> 00:00:02,000\n{SENTENCES[0]}\n\n2\n00:00:03,000 --> 00:00:04,000\nten\n"
    )
    by_id(browser, "file").send_keys(str(document))
    Select(by_id(browser, "file-source")).select_by_value("en")
    Select(by_id(browser, "file-target")).select_by_value("fr")
    by_id(browser, "translate-file").click()
    wait_for(browser, lambda d: by_id(d, "file-result").is_displayed(), "no download link")
    link = by_id(browser, "download")
    assert link.text == "notes_fr.srt" and link.get_attribute("href").startswith(
        f"{server.url}/download_file/"
    )
    got = httpx.get(link.get_attribute("href"), timeout=30)
    doc = parse_document(document.read_bytes(), "notes.srt")
    r = httpx.post(
        f"{server.url}/translate", json={"q": doc.texts, "source": "en", "target": "fr", "api_key": KEY}
    )
    assert got.content == doc.render(r.json()["translatedText"])  # what /translate says, in the same layout

    document.write_bytes(b"\xff\xfe not UTF-8")  # the server's 400, in words
    by_id(browser, "file").send_keys(str(document))
    by_id(browser, "translate-file").click()
    error_shown(browser, "not UTF-8")
    by_id(browser, "tab-text").click()
    assert by_id(browser, "text-pane").is_displayed() and not by_id(browser, "file-pane").is_displayed()


def test_suggest_button_sends_the_edited_translation(browser, server: Server) -> None:
    import sqlite3

    open_page(browser, server, KEY)
    choose(browser, "en", "fr")
    fill(browser, "text", SENTENCES[0])
    by_id(browser, "translate").click()
    wait_for(browser, lambda d: "Translated 1 sentence" in by_id(d, "status").text, "no translation")
    (button,) = all_of(browser, "#sentences .suggest-button")  # /frontend/settings: suggestions are on
    button.click()
    field = all_of(browser, "#sentences .suggest-text")[0]
    assert field.get_attribute("value") == all_of(browser, "#sentences .translation")[0].text
    field.clear()
    field.send_keys("sept chiens courent dans le parc")
    all_of(browser, "#sentences .suggest-send")[0].click()
    wait_for(browser, lambda d: "suggestion was sent" in by_id(d, "status").text, "suggestion not sent")
    assert all_of(browser, "#sentences .suggest-box") == []
    rows = (
        sqlite3.connect(server.suggestions).execute("SELECT q, s, source, target FROM suggestions").fetchall()
    )
    assert rows == [(SENTENCES[0], "sept chiens courent dans le parc", "en", "fr")]


def test_a_wheel_ships_the_page(tmp_path: Path) -> None:
    """A non-editable install serves the page too: every file of serve/web/static is in the wheel."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and egg-info behind
    for package in ("seq2seq", "serve"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("seq2seq-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    page = {f"serve/web/static/{p.name}" for p in (ROOT / "serve" / "web" / "static").iterdir()}
    assert page == {"serve/web/static/index.html", "serve/web/static/app.js", "serve/web/static/style.css"}
    assert page | {"serve/web/__init__.py"} <= shipped
