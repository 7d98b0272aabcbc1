"""End-to-end demo: train on the built-in corpus, serve the model over HTTP, translate held-out
sentences through the server, report exact-match accuracy, and shut the server down.

    python scripts/demo.py                      # what `make demo` runs
    python scripts/demo.py --min-accuracy 0.95 --beam-size 1
    python scripts/demo.py --checkpoint runs/demo/checkpoints/last.ckpt   # skip training
    python scripts/demo.py --trainer.max_epochs=2   # unknown options go to scripts/train.py

Exits non-zero when training, the server or a request fails, or accuracy is under the threshold.
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo",
                   help="checkpoints and logs go here")  # fmt: skip
    p.add_argument("--checkpoint", type=Path, help="serve this checkpoint instead of training")
    p.add_argument("--split", default="test", help="held-out split to translate")
    p.add_argument("--num-sentences", type=int, default=0, help="0: the whole split")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--request-size", type=int, default=50, help="texts per HTTP request")
    p.add_argument("--examples", type=int, default=5, help="sentences to print")
    p.add_argument("--min-accuracy", type=float, default=0.9,
                   help="fail if held-out exact match is below this (0-1)")  # fmt: skip
    p.add_argument("--train-threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)),
                   help="torch threads for training (default $OMP_NUM_THREADS or 1: on 2 busy "
                   "cores, 2 threads of this small model can be several times slower)")  # fmt: skip
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds")
    args, train_args = p.parse_known_args(argv)
    if not 0.0 <= args.min_accuracy <= 1.0:
        p.error("--min-accuracy must be between 0 and 1")
    if min(args.beam_size, args.request_size, args.train_threads) < 1 or args.num_sentences < 0:
        p.error("--beam-size, --request-size and --train-threads must be >= 1, --num-sentences >= 0")
    if args.checkpoint is not None and train_args:
        p.error(f"training options {train_args} make no sense with --checkpoint")
    return args, train_args


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


# -- 1. train -------------------------------------------------------------------------------
def train(config: Path, workdir: Path, extra: list[str], threads: int) -> Path:
    """Run ``scripts/train.py fit`` (progress bar on the terminal); return the best checkpoint."""
    ckpt_dir = workdir / "checkpoints"
    for old in ckpt_dir.glob("*.ckpt"):  # a fresh run must not pick up an older model
        old.unlink()
    cmd = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "fit", f"--config={config}",
        f"--checkpoint.dirpath={ckpt_dir}", f"--trainer.logger.init_args.save_dir={workdir}",
        *extra,
    ]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if code != 0:
        raise DemoError(f"training failed with exit code {code}")
    return best_checkpoint(ckpt_dir)


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The best checkpoint as recorded by the checkpoint callback in ``last.ckpt``, else the
    newest ``best*.ckpt``, else ``last.ckpt``."""
    from seq2seq.translator import load_checkpoint

    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        for state in load_checkpoint(last).get("callbacks", {}).values():
            path = state.get("best_model_path") if isinstance(state, dict) else None
            if path and Path(path).is_file():
                return Path(path)
    best = sorted(ckpt_dir.glob("best*.ckpt"), key=os.path.getmtime)
    chosen = best[-1] if best else last
    if not chosen.is_file():
        raise DemoError(f"training wrote no checkpoint into {ckpt_dir}")
    return chosen


# -- 2. held-out data -----------------------------------------------------------------------
def held_out(checkpoint: Path, config: Path, split: str, limit: int) -> tuple[list[str], list[str]]:
    """Sources and references of ``split`` of the corpus the checkpoint was trained on."""
    from seq2seq.data import TranslationDataModule
    from seq2seq.sources import load_corpus
    from seq2seq.translator import load_checkpoint

    data = load_checkpoint(checkpoint).get("datamodule_hyper_parameters")
    if not data:  # not written by the training CLI: fall back to the config file
        import yaml

        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    params = inspect.signature(TranslationDataModule.__init__).parameters
    hp = {k: data.get(k, p.default) for k, p in params.items() if k != "self"}
    corpus = load_corpus(
        hp["source"], hp["src_lang"], hp["tgt_lang"], hp["dataset_config"], hp["splits"],
        hp["src_column"], hp["tgt_column"], tuple(hp["builtin_sizes"]), hp["seed"],
    )  # fmt: skip
    if split not in corpus:
        raise DemoError(f"the corpus {hp['source']} has no {split!r} split (has {list(corpus)})")
    ds = corpus[split]
    ds = ds.select(range(len(ds) if limit == 0 else min(limit, len(ds))))
    return list(ds["src"]), list(ds["tgt"])


# -- 3. the server --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m serve`` in its own process group, so that stop() can prove nothing is left."""

    def __init__(self, checkpoint: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        cmd = [sys.executable, "-m", "serve", "--checkpoint", str(checkpoint),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
        print("$", " ".join(cmd[1:]), flush=True)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)

    def wait_ready(self, client: httpx.Client, timeout: float) -> None:
        """Poll ``GET /health`` until it answers 200; fail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"the server exited with code {self.proc.returncode} during start-up")
            try:
                if client.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.25)  # poll interval
        raise DemoError(f"the server was not healthy within {timeout:.0f}s")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT, wait for the exit, then check that no worker survived and the port is free."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DemoError(f"the server did not exit within {timeout:.0f}s of SIGINT") from None
        deadline = time.monotonic() + 10
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.group_alive():
            self.kill()
            raise DemoError("server worker processes outlived the server's main process")
        if self.proc.returncode not in (0, -signal.SIGINT, 130):
            raise DemoError(f"the server exited with code {self.proc.returncode} on SIGINT")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                raise DemoError(f"port {self.port} is still in use after shutdown") from None

    def kill(self) -> None:
        """Last resort, on failure paths only: the whole process group this demo started."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def translate(client: httpx.Client, url: str, texts: list[str], beam: int, size: int) -> list[str]:
    """POST the texts in requests of ``size``; return the best translation of each."""
    out: list[str] = []
    for start in range(0, len(texts), size):
        chunk = texts[start : start + size]
        r = client.post(f"{url}/translate", json={"texts": chunk, "beam_size": beam}, timeout=300)
        if r.status_code != 200:
            raise DemoError(f"POST /translate answered {r.status_code}: {r.text[:500]}")
        items = r.json().get("translations")
        if not isinstance(items, list) or len(items) != len(chunk):
            raise DemoError(f"POST /translate returned {r.text[:300]!r} for {len(chunk)} texts")
        out.extend(t["text"] if isinstance(t, dict) else str(t) for t in items)
    return out


# -- 4. the report --------------------------------------------------------------------------
def report(sources: list[str], hyps: list[str], refs: list[str], examples: int) -> float:
    """Print a few sentences and the exact-match accuracy; return the accuracy."""
    correct = [h.strip() == r.strip() for h, r in zip(hyps, refs, strict=True)]
    shown = list(range(min(examples, len(sources))))
    shown += [i for i, ok in enumerate(correct) if not ok][:2]  # and a mistake or two, if any
    for i in dict.fromkeys(shown):
        print(f"  source      {sources[i]}")
        print(f"  translation {hyps[i]}")
        print(f"  reference   {refs[i]}   [{'ok' if correct[i] else 'WRONG'}]\n")
    accuracy = sum(correct) / max(1, len(correct))
    print(f"exact match: {sum(correct)}/{len(correct)} = {100 * accuracy:.1f}%")
    return accuracy


def run(args: argparse.Namespace, train_args: list[str]) -> float:
    times: dict[str, float] = {}
    start = time.perf_counter()
    if args.checkpoint is None:
        banner(f"1/4 training with {args.config}")
        checkpoint = train(args.config, args.workdir, train_args, args.train_threads)
        times["train"] = time.perf_counter() - start
    else:
        checkpoint = args.checkpoint
        if not checkpoint.is_file():
            raise DemoError(f"checkpoint {checkpoint} does not exist")
    print(f"checkpoint: {checkpoint}")
    sources, refs = held_out(checkpoint, args.config, args.split, args.num_sentences)

    banner("2/4 starting the server")
    t = time.perf_counter()
    server = Server(checkpoint, free_port())
    try:
        with httpx.Client() as client:
            server.wait_ready(client, args.startup_timeout)
            times["server start"] = time.perf_counter() - t
            print(f"healthy at {server.url} after {times['server start']:.1f}s")

            banner(f"3/4 translating {len(sources)} sentences of the {args.split} split over HTTP")
            t = time.perf_counter()
            hyps = translate(client, server.url, sources, args.beam_size, args.request_size)
            times["translate"] = time.perf_counter() - t
            print(f"{len(sources) / times['translate']:.1f} sentences/s, beam size {args.beam_size}\n")
            accuracy = report(sources, hyps, refs, args.examples)
    except BaseException:
        server.kill()  # the original error matters more than a clean shutdown
        raise
    banner("4/4 stopping the server (SIGINT)")
    t = time.perf_counter()
    server.stop()
    print(f"server exited with code {server.proc.returncode} in {time.perf_counter() - t:.1f}s; "
          "no process left, port free")  # fmt: skip
    times["total"] = time.perf_counter() - start
    print("times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return accuracy


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    try:
        accuracy = run(args, train_args)
    except (
        DemoError,
        httpx.HTTPError,
        ValueError,
    ) as e:  # ValueError: CheckpointError, CorpusError
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    if accuracy < args.min_accuracy:
        print(f"demo: FAILED: exact match {100 * accuracy:.1f}% is below "
              f"--min-accuracy {100 * args.min_accuracy:.1f}%", file=sys.stderr)  # fmt: skip
        return 1
    print(f"demo: OK (exact match {100 * accuracy:.1f}% >= {100 * args.min_accuracy:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
