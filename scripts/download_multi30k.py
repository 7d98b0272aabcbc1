"""Fetch the Multi30k task-1 files into ``data/multi30k``, where ``configs/multi30k_*.yaml`` read them.

    python scripts/download_multi30k.py                      # from the Multi30k project on GitHub
    python scripts/download_multi30k.py --out corpora/m30k   # then --data.source=corpora/m30k
    python scripts/download_multi30k.py --base-url file:///path/to/mirror   # a local mirror

The files are ``{train,val,test_2016_flickr}.{de,en,fr,cs}.gz`` from the official repository
(https://github.com/multi30k/dataset, ``data/task1/raw``), the layout ``seq2seq.sources`` reads as
a folder of line-aligned files. Each file is checked against its known size and SHA-256; a file
already present and correct is kept, so the command can be run again at no cost. Exits non-zero,
naming the file, when a download fails or does not match.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
# name -> (size in bytes, sha256) of the official files
FILES = {
    "train.de.gz": (637044, "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    "train.en.gz": (568929, "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    "train.fr.gz": (604242, "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
    "train.cs.gz": (593827, "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077"),
    "val.de.gz": (24681, "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    "val.en.gz": (21650, "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    "val.fr.gz": (23001, "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
    "val.cs.gz": (22096, "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc"),
    "test_2016_flickr.de.gz": (22890, "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
    "test_2016_flickr.en.gz": (21077, "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    "test_2016_flickr.fr.gz": (22310, "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
    "test_2016_flickr.cs.gz": (22572, "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1"),
}


class DownloadError(RuntimeError):
    """A file could not be fetched, or what came does not match its known size and hash."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def mismatch(path: Path, name: str) -> str | None:
    """Why ``path`` is not the official ``name`` (None when it is)."""
    size, digest = FILES[name]
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, expected {size}"
    if sha256(path) != digest:
        return f"sha256 differs from {digest}"
    return None


def fetch(url: str, dest: Path, name: str, timeout: float) -> None:
    """Download ``url`` to a temporary file beside ``dest``, check it, then rename it into place."""
    tmp = Path(tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.")[1])
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while block := response.read(1 << 16):
                    out.write(block)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{name}: cannot download {url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DownloadError(f"{name}: cannot download {url}: {reason}") from e
        problem = mismatch(tmp, name)
        if problem:
            raise DownloadError(f"{name}: the file from {url} is not the official one ({problem})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(base_url: str, out: Path, timeout: float = 60.0, log=print) -> list[str]:
    """Fetch every missing or wrong file of ``FILES`` into ``out``; returns the names fetched."""
    out.mkdir(parents=True, exist_ok=True)
    fetched = []
    for name in FILES:
        dest = out / name
        if dest.is_file() and mismatch(dest, name) is None:
            continue
        url = f"{base_url.rstrip('/')}/{name}"
        log(f"fetching {url}")
        fetch(url, dest, name, timeout)
        fetched.append(name)
    return fetched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=BASE_URL, help="where the files are (http(s):// or file://)")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "multi30k", help="folder to write them to")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each connection")
    args = p.parse_args(argv)
    try:
        fetched = download(args.base_url, args.out, args.timeout)
    except (DownloadError, OSError) as e:
        print(f"download_multi30k.py: error: {e}", file=sys.stderr)
        return 1
    kept = len(FILES) - len(fetched)
    print(f"{args.out}: {len(fetched)} fetched, {kept} already present; all {len(FILES)} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
