"""scripts/download_multi30k.py against a real local HTTP server and a file:// URL serving copies
of the Multi30k files ($SEQ2SEQ_MULTI30K_DIR): every file arrives byte for byte, a second run
fetches nothing, a damaged file is fetched again, and a wrong or missing file is a clear error."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MULTI30K, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import download_multi30k  # noqa: E402

SCRIPT = ROOT / "scripts" / "download_multi30k.py"
pytestmark = pytest.mark.skipif(
    not all((MULTI30K / name).is_file() for name in download_multi30k.FILES),
    reason=f"no Multi30k copy to serve at {MULTI30K} (set SEQ2SEQ_MULTI30K_DIR to a folder of the official files)",
)


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A writable copy of the official files, so that a test can damage one."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name in download_multi30k.FILES:
        shutil.copyfile(MULTI30K / name, folder / name)
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url(mirror: Path) -> Iterator[str]:
    """``mirror`` served by http.server on a free port of 127.0.0.1."""
    handler = functools.partial(QuietHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data/task1/raw"
    server.shutdown()
    server.server_close()


@pytest.fixture
def raw_url(mirror: Path) -> str:
    """The official layout (data/task1/raw) under the mirror, as the default URL has it."""
    raw = mirror / "data" / "task1" / "raw"
    raw.mkdir(parents=True)
    for name in download_multi30k.FILES:
        shutil.move(mirror / name, raw / name)
    return str(raw)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_http_download_is_complete_and_idempotent(raw_url: str, http_url: str, tmp_path: Path) -> None:
    out = tmp_path / "data" / "multi30k"
    first = run("--base-url", http_url, "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(download_multi30k.FILES)
    for name in download_multi30k.FILES:
        assert digest(out / name) == digest(MULTI30K / name), name
    assert "12 fetched, 0 already present" in first.stdout

    again = run("--base-url", http_url, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "0 fetched, 12 already present" in again.stdout and "fetching" not in again.stdout

    (out / "val.de.gz").write_bytes(b"truncated")  # a damaged file is fetched again, the rest kept
    repaired = run("--base-url", http_url, "--out", str(out))
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.count("fetching") == 1 and "val.de.gz" in repaired.stdout
    assert digest(out / "val.de.gz") == digest(MULTI30K / "val.de.gz")


def test_downloaded_folder_is_a_corpus_the_configs_read(raw_url: str, tmp_path: Path) -> None:
    """What the download writes is what ``configs/multi30k_*.yaml`` read as ``data.source``."""
    from seq2seq.sources import load_corpus

    out = tmp_path / "multi30k"
    assert download_multi30k.download(Path(raw_url).as_uri(), out, log=lambda _: None)
    splits = load_corpus(str(out), "de", "en")
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 29000,
        "validation": 1014,
        "test": 1000,
    }


def test_a_file_that_differs_is_refused_by_name(raw_url: str, tmp_path: Path) -> None:
    tampered = Path(raw_url) / "train.en.gz"
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the hash can tell
    tampered.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run("--base-url", Path(raw_url).as_uri(), "--out", str(out))
    assert result.returncode == 1
    assert "train.en.gz" in result.stderr and "sha256" in result.stderr
    assert not (out / "train.en.gz").exists()  # never left in place
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nor its temporary file


def test_a_missing_file_names_its_url(raw_url: str, http_url: str, tmp_path: Path) -> None:
    (Path(raw_url) / "test_2016_flickr.cs.gz").unlink()
    result = run("--base-url", http_url, "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{http_url}/test_2016_flickr.cs.gz" in result.stderr and "404" in result.stderr
    assert "Traceback" not in result.stderr
