"""Reloading the checkpoints from their paths with no dropped request: SIGHUP, or ``POST /admin/reload``.

The main process checks the files first, as at start-up (``check_checkpoints_isolated``): a file
that does not load, or that would change the language pairs, leaves every worker serving the old
model, and the log says why. Then, one slot at a time, a new worker starts beside the old one
(``SupervisedServer.replace_worker``); once it has loaded its models it takes the slot, and the old
one retires: it takes no new request, finishes what it is decoding and exits. Both read the one
request queue meanwhile, so with one worker as with several some worker always takes requests.

``ServedModels`` holds what each model serves now (checkpoint, sha256, when it was loaded) and the
last reload's outcome, in shared memory made before LitServe forks its HTTP processes: they read it
for ``/info``, ``/metrics`` and the admin route's answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import GaugeMetricFamily

from serve.catalog import model_key
from serve.ops import metrics
from serve.worker.checkpoint import check_checkpoints_isolated

if TYPE_CHECKING:
    from serve.worker.supervisor import SupervisedServer

logger = logging.getLogger(__name__)

HIDDEN = ("path", "src_spm")  # metadata the HTTP processes do not show
ADMIN_WAIT_S = 600.0  # the most the admin route waits for the reload it asked for


def shown(meta: dict, loaded_at: float) -> dict:
    """A model's ``/info`` entry: its checked metadata, less paths and tokenizer bytes, and its load time."""
    return {k: v for k, v in meta.items() if k not in HIDDEN} | {"loaded_at": round(loaded_at, 3)}


class ServedModels:
    """The models served now and the last reload, as JSON in shared memory (written by the main
    process only, read by every HTTP process)."""

    size = 1 << 18

    def __init__(self, metas: list[dict]) -> None:
        self._blob = mp.RawArray("c", self.size)
        self._lock = mp.Lock()
        now = time.time()
        self.write({"models": [shown(m, now) for m in metas], "reload": None})

    def write(self, state: dict) -> None:
        data = json.dumps(state).encode()
        if len(data) >= self.size:
            raise ValueError(f"model metadata of {len(data)} bytes does not fit in {self.size}")
        with self._lock:
            self._blob.value = data

    def read(self) -> dict:
        with self._lock:
            data = self._blob.value
        return json.loads(data)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """prometheus-client's collector protocol: each model's checkpoint and load time."""
        info = GaugeMetricFamily(
            "seq2seq_model_info",
            "the checkpoint each model serves (1)",
            labels=["model", "checkpoint", "sha256"],
        )
        loaded = GaugeMetricFamily(
            "seq2seq_model_loaded_timestamp_seconds",
            "when each model's checkpoint was loaded",
            labels=["model"],
        )
        for m in self.read()["models"]:
            info.add_metric([m["key"], m["checkpoint"], m["sha256"]], 1.0)
            loaded.add_metric([m["key"]], m["loaded_at"])
        yield info
        yield loaded


class Reloader:
    """Reloads on request, in a thread of the main process; requests during a reload make one more."""

    def __init__(self, server: SupervisedServer, paths: list[str], device: str, quantize: str,
                 served: ServedModels) -> None:  # fmt: skip
        self.server, self.paths, self.served = server, paths, served
        self.device, self.quantize = device, quantize
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for a reload (safe in a signal handler: it sets an event, and starts the thread once)."""
        self._wanted.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="seq2seq-reload")
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            started = time.time()
            self._record({"started_at": started, "finished_at": None, "ok": None, "message": "reloading"})
            try:
                ok, message, models = self.reload()
            except Exception as e:  # never let the thread die: the next SIGHUP must still work
                logger.exception("reload failed")
                ok, message, models = False, f"reload failed: {e}", None
            (logger.info if ok else logger.error)("%s", message)
            metrics.RELOADS.labels("ok" if ok else "failed").inc()
            self._record(
                {"started_at": started, "finished_at": time.time(), "ok": ok, "message": message}, models
            )

    def _record(self, reload: dict, models: list[dict] | None = None) -> None:
        """The reload's state, and the models when they changed, in one write the HTTP processes see whole."""
        self.served.write({"models": models or self.served.read()["models"], "reload": reload})

    def reload(self) -> tuple[bool, str, list[dict] | None]:
        """Check the files, then replace the workers one by one: (done, what to log, the models now served)."""
        logger.info("reloading %s", ", ".join(self.paths))
        metas, error = check_checkpoints_isolated(self.paths, self.device, self.quantize)
        if error is not None:
            return False, f"reload refused, the previous checkpoints still serve: {error}", None
        before = {m["key"] for m in self.served.read()["models"]}
        after = {model_key(m["src_lang"], m["tgt_lang"]) for m in metas}
        if after != before:
            return (
                False,
                (
                    f"reload refused, the previous checkpoints still serve: the files now translate "
                    f"{', '.join(sorted(after))} instead of {', '.join(sorted(before))} (restart to change pairs)"
                ),
                None,
            )
        slots = len(self.server.inference_workers)
        for index in range(slots):
            problem = self.server.replace_worker(index)
            if problem is not None:
                return False, f"reload stopped after {index} of {slots} workers: {problem}", None
        now = time.time()
        keyed = [
            m | {"key": model_key(m["src_lang"], m["tgt_lang"]), "quantize": self.quantize} for m in metas
        ]
        models = [shown(m, now) for m in keyed]
        digests = ", ".join(f"{m['key']} {m['sha256'][:12]}" for m in models)
        return True, f"reloaded {slots} worker(s): {digests}", models


def install_admin_route(app: FastAPI, token: str, served: ServedModels, main_pid: int) -> None:
    """``POST /admin/reload`` with ``Authorization: Bearer TOKEN``: SIGHUP to the main process, then
    the outcome of that reload (200, or 422 when the old checkpoints still serve)."""

    async def reload(request: Request) -> JSONResponse:
        asked = time.time()
        os.kill(main_pid, signal.SIGHUP)
        deadline = time.monotonic() + ADMIN_WAIT_S
        while time.monotonic() < deadline:
            now = served.read()
            state = now["reload"]
            if state and state["started_at"] >= asked and state["finished_at"] is not None:
                return JSONResponse(
                    state | {"models": now["models"]}, status_code=200 if state["ok"] else 422
                )
            await asyncio.sleep(0.1)  # the main process writes the outcome to shared memory
        raise HTTPException(504, "the reload is still running: see /info")

    app.add_api_route("/admin/reload", reload, methods=["POST"], include_in_schema=False,
                      dependencies=[Depends(metrics.bearer_check(token, "admin token"))])  # fmt: skip
