"""``python -m serve --checkpoint de-en.ckpt --checkpoint en-de.ckpt`` (console script ``seq2seq-serve``).

``--checkpoint`` repeats, or names a folder (every ``*.ckpt`` in it); each model's languages come
from its checkpoint. The checkpoints are checked before any worker starts, so a missing, corrupt
or unsafe file, or two files for one language pair, stops start-up with one line on stderr and
exit code 2. The check runs in one short-lived child process: this process never imports torch,
so neither do the HTTP processes LitServe forks from it (each would otherwise carry about 200 MB of
torch); only the inference workers load the model. SIGHUP reloads the checkpoints from the same
paths with no dropped request (``serve.worker.reload``).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from serve.options import parse_args
from serve.worker.checkpoint import check_checkpoints_isolated


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def fail(message: str) -> NoReturn:
    print(f"seq2seq-serve: error: {message}", file=sys.stderr)
    sys.exit(2)


_MAIN_PID = os.getpid()
_DRAIN: list = []  # (serve.ops.probes.Drain, --shutdown-delay) once the server is built
_RELOADER: list = []  # serve.worker.reload.Reloader once the server is built


def _on_signal(signum: int, frame: object) -> None:
    """SIGTERM and SIGINT -> LitServe's graceful shutdown (on plain SIGTERM it orphans its workers).
    SIGTERM first turns readiness 503 and keeps serving for --shutdown-delay seconds."""
    if os.getpid() != _MAIN_PID:  # a forked API process: uvicorn re-raises after its own shutdown
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    if signum == signal.SIGTERM and _DRAIN:
        drain, delay = _DRAIN[0]
        drain.start()
        time.sleep(delay)  # the HTTP processes answer meanwhile; a load balancer sees /health 503
    raise KeyboardInterrupt


def _on_hangup(signum: int, frame: object) -> None:
    """SIGHUP -> reload the checkpoints with no dropped request (``serve.worker.reload``)."""
    if os.getpid() == _MAIN_PID and _RELOADER:
        _RELOADER[0].request()


def _reap_children() -> None:
    """Stop any worker LitServe left behind (e.g. when interrupted during start-up)."""
    for child in mp.active_children():
        child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()


def checkpoint_files(given: list[str]) -> list[str]:
    """The files named, with each folder replaced by the ``*.ckpt`` files in it."""
    files: list[str] = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.ckpt") if p.is_file())
            if not found:
                fail(f"checkpoint folder {name} holds no *.ckpt file")
            files += found
        elif path.is_file():
            files.append(name)
        else:  # before the slow torch import
            fail(f"checkpoint {name} does not exist or is not a file")
    return files


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cpus = None
    if args.pin_cpus:
        from serve.worker.affinity import CpuPlan

        try:
            cpus = CpuPlan.make(args.workers, args.threads or None)
        except ValueError as e:
            fail(str(e))
        args.threads = cpus.threads()
        cpus.pin_rest()  # every process started from here on inherits it; the workers then pin their own
    metas, error = check_checkpoints_isolated(checkpoint_files(args.checkpoint), args.device, args.quantize)
    if error is not None:
        fail(error)
    from serve.catalog import Catalog

    try:
        catalog = Catalog.from_metadata(metas)
    except ValueError as e:
        fail(str(e))
    if not port_free(args.host, args.port):
        fail(f"cannot listen on {args.host}:{args.port}: the port is in use")

    # before anything imports prometheus_client: every process of the server records there
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="seq2seq-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)

    from serve.app import build_server
    from serve.ops import logs

    log_config = logs.configure(args.log_format, args.log_level)
    server = build_server(args, catalog, metas[0]["device"], cpus)
    _DRAIN.append((server.drain, args.shutdown_delay))
    _RELOADER.append(server.reloader)
    from serve.ops.proxy import uvicorn_proxy_settings

    uvicorn_logs = {"log_config": log_config, "access_log": False} if log_config else {}
    uvicorn_logs |= uvicorn_proxy_settings(args)  # --trust-forwarded-for, --forwarded-allow-ips
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl+C must still work
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_hangup)
    try:
        server.run(
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            generate_client_file=False,
            **uvicorn_logs,
        )
    except KeyboardInterrupt:
        pass  # interrupted before LitServe's own handler was in place
    except RuntimeError as e:  # LitServe: "One or more workers failed to start"
        server.failure = str(e)
    finally:
        _reap_children()
    if server.failure:  # a worker could not be (re)started: a supervisor should restart the server
        print(f"seq2seq-serve: error: {server.failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
