"""The documentation stays true: every relative link and anchor resolves, the README's quick start
runs as written (training with tiny settings), its Python example works, and no page speaks of how
the project was made or names a path of one machine."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, tiny_train_args

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "HISTORY.md"]
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
QUICKSTART = "<!-- quickstart"
# wording about how the project was made, and paths that exist on one machine only
DEVLOG = re.compile(
    r"\bsessions?\b|\bissue #?\d|\byesterday\b|\bscratch\b|\bthis VM\b|\.\./shared",
    re.IGNORECASE,
)
# /data and /models are the container image's documented mount points, not paths of one machine
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:work|tmp|home|root|mnt|opt|srv|shared|Users|private)/")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for _, line in prose_lines(path.read_text()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return found


def broken_links(path: Path) -> list[str]:
    """Relative links and anchors in ``path`` that lead nowhere."""
    problems = []
    for number, line in prose_lines(path.read_text()):
        line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} (no heading #{anchor} in {dest.name})")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_checker_catches_a_broken_link_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](other.md#a-section-with-code) [ok](#page) [gone](missing.md) [bad](other.md#nope)\n"
        "```\n[in code](not-checked.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md (no such file)" in problems[0] and "no heading #nope" in problems[1]


def test_slugs_follow_github() -> None:
    assert slug("Checkpoints, preemption and resume") == "checkpoints-preemption-and-resume"
    assert slug("serve/ module map") == "serve-module-map"
    assert slug("`seq2seq/` module map") == "seq2seq-module-map"
    assert slug("More processes: DDP") == "more-processes-ddp"


def user_facing_files() -> list[Path]:
    """README.md and every file under docs/, configs/ and bench/ but images and caches."""
    paths = [ROOT / "README.md"]
    for folder in ("docs", "configs", "bench"):
        paths += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return [p for p in paths if p.suffix not in {".png", ".pyc"}]


def test_no_development_log_wording_or_machine_paths() -> None:
    problems = []
    for path in user_facing_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in (DEVLOG, ABSOLUTE):
                m = pattern.search(line)
                if m:
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {m.group(0)!r}")
    assert problems == []


def test_readme_is_short_and_its_lines_and_cells_are_too() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for number, line in prose_lines(text):
        assert len(line) <= 200, f"README.md:{number} has {len(line)} characters"
        if line.startswith("|"):
            for cell in line.strip("|").split("|"):
                assert len(cell.strip()) <= 100, (
                    f"README.md:{number}: a cell of {len(cell.strip())} characters"
                )
    for number, line in prose_lines((ROOT / "docs" / "benchmarks.md").read_text()):
        if line.startswith("|"):
            for cell in line.strip("|").split("|"):
                assert len(cell.strip()) <= 200, (
                    f"docs/benchmarks.md:{number}: {len(cell.strip())} characters"
                )


# -- the quick start, run as written ------------------------------------------------------------
def quickstart_commands() -> list[str]:
    """The lines of the code block that follows the quick-start marker in README.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(QUICKSTART))
    assert FENCE.match(lines[start + 1]), "the quick-start marker must sit right above its code block"
    end = next(i for i in range(start + 2, len(lines)) if FENCE.match(lines[i]))
    return [line for line in lines[start + 2 : end] if line.strip() and not line.startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_block() -> str:
    """The first Python code block of README.md: the API example."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"^```python\n(.*?)^```", text, re.S | re.M).group(1)


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    commands = quickstart_commands()
    kinds = [
        next((k for k in ("train.py fit", "translate.py", "-m serve", "curl") if k in c), None)
        for c in commands
    ]
    assert kinds == ["train.py fit", "translate.py", "-m serve", "curl", "curl"], commands
    for link in ("configs", "scripts"):  # run where a user would, but write into a fresh folder
        (tmp_path / link).symlink_to(ROOT / link)
    port = str(free_port())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is ours
        "SEQ2SEQ_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }

    def run(command: str) -> str:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        return done.stdout

    # train: the command as written, then tiny settings (later options win)
    tiny = [a for a in tiny_train_args(tmp_path)[1:] if not a.startswith("--trainer.default_root_dir")]
    run(
        commands[0]
        + " "
        + shlex.join([*tiny, "--trainer.max_epochs=1", "--data.builtin_sizes=[600, 30, 30]"])
    )
    checkpoint = tmp_path / "runs" / "quickstart" / "last.ckpt"
    assert checkpoint.is_file()

    from seq2seq import Translator

    expected = Translator.from_checkpoint(checkpoint).translate(["seventy-four"], beam_size=5)[0].text
    assert run(commands[1]).strip() == expected

    serve = commands[2].replace("8000", port)
    assert serve.endswith("&")
    server = subprocess.Popen(["bash", "-c", "exec " + serve.rstrip("& ")], cwd=tmp_path, env=env,
                              start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "the server exited"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        native = json.loads(run(commands[3].replace("8000", port)))
        assert native["translations"][0]["text"] == expected
        libre = json.loads(run(commands[4].replace("8000", port)))
        assert libre == {"translatedText": expected}
        readme = (ROOT / "README.md").read_text()
        for page in ("http://localhost:8000/", "http://localhost:8000/docs"):
            assert f"<{page}>" in readme
            answer = httpx.get(page.replace("localhost:8000", f"127.0.0.1:{port}"), timeout=10)
            assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    finally:
        server.send_signal(signal.SIGINT)  # to the main process only, as docs/operations.md says
        try:
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
    assert server.returncode == 0

    # the Python API example, on the checkpoint the quick start wrote
    monkeypatch.chdir(tmp_path)
    exec(python_block(), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].rsplit(" ", 1)[0] == expected
