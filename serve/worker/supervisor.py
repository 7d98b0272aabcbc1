"""A server that outlives its inference workers: a worker that dies is restarted, and the requests
it held are answered 503 at once instead of hanging.

Works around litserve 0.2.19, ``LitServer._start_worker_monitoring`` (litserve/server.py, lines
1603-1672). Without ``restart_workers`` its monitor shuts the server down from a side thread
while the main thread still waits on the Manager, which ends in an ``EOFError`` traceback. With
it, the worker is restarted, but the requests it was translating hang for ever: the monitor fails
them in the main process's ``response_buffer``, while the buffers live in the forked HTTP
processes (and it sets their asyncio events from a thread). It also restarts a worker whose
``setup`` fails, for ever. ``SupervisedServer`` replaces that monitor. The main process restarts
dead workers and counts the deaths in shared memory;
each HTTP process watches the count and, on a death, answers 503 to every
request it is still waiting for, and the workers skip the requests queued before the death
(``TranslationLoop.stale_before``). Requests are not traced to the worker that took them (LitServe's
START notices would cost a message per request), so with several workers a death also fails the
requests the other workers were translating: clients retry after ``Retry-After``. A worker that keeps failing
before it is ready stops the server with ``failure`` set, for a one-line exit.

With ``serve.worker.loop``, the only module that uses LitServe beyond its top-level names and
``litserve.loops``: here ``response_buffer`` and ``ResponseBufferItem``, ``inference_workers``,
``launch_single_inference_worker``, ``workers_setup_status`` with ``WorkerSetupStatus``,
``_inference_workers_config_for_api``, ``_shutdown_event`` and ``_perform_graceful_shutdown``
(pinned by ``tests/test_litserve_seams.py``).

A reload (``serve.worker.reload``) starts a new worker beside an old one in its slot. LitServe
0.2.19 keys ``workers_setup_status`` by slot and ``/health`` wants every entry READY
(litserve/server.py, ``_register_internal_endpoints``, lines 1029-1051), so the new worker would turn ``/health`` 503 while it loads:
``replace_worker`` hands it a ``SetupStatus`` of its own instead.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import signal
import threading
import time
from contextlib import asynccontextmanager

import litserve as ls
from fastapi import FastAPI, HTTPException
from litserve.utils import LitAPIStatus, ResponseBufferItem, WorkerSetupStatus

from serve.ops import metrics
from serve.worker.loop import TranslationLoop

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 tells the client; a restart takes a few seconds


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the out-of-memory killer sends it)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {exitcode}"


class SetupStatus:
    """One worker's setup status, in place of LitServe's shared dict (module docstring): what
    ``launch_single_inference_worker`` and ``inference_worker`` write to it, they write here."""

    def __init__(self) -> None:
        self._value = mp.RawArray("c", 16)

    def __setitem__(self, key: str, value: str) -> None:
        self._value.value = value.encode()

    def __bool__(self) -> bool:  # inference_worker writes READY only "if workers_setup_status"
        return True

    @property
    def value(self) -> str:
        return self._value.value.decode()


class SupervisedServer(ls.LitServer):
    """``LitServer`` whose inference workers are restarted when they die (see the module docstring)."""

    poll_s = 0.2  # how often the main process checks its workers and the HTTP processes the counters
    max_setup_failures = 3  # restarts in a row that die before ready: then give up (at once if setup raises)
    stop_grace_s = 1.0  # a worker that left cleanly (Ctrl+C reaches it too) is restarted only after this
    load_deadline_s = 300.0  # a reload's new worker must be ready by then
    retire_deadline_s = 120.0  # a retired worker must have finished decoding by then

    failure: str | None = None  # why the server gave up; None while it runs or after a normal stop

    def __init__(
        self,
        lit_api: ls.LitAPI,
        accelerator: str,
        workers_per_device: int,
        timeout: float,
        model_metadata: dict,
        max_payload_size: int,
        middlewares: list,
    ) -> None:
        super().__init__(
            lit_api,
            accelerator=accelerator,
            workers_per_device=workers_per_device,
            timeout=timeout,
            model_metadata=model_metadata,
            max_payload_size=max_payload_size,
            middlewares=middlewares,
            restart_workers=False,  # restarts are ours; LitServe's workers then send no START notices
        )
        # worker deaths, counted here and watched by the HTTP processes forked after this
        self._deaths = mp.RawValue("i", 0)
        self._no_workers = mp.RawValue("b", 0)  # set when shutting down and every worker is gone
        self._stopping = False
        self._lock = threading.Lock()  # the supervisor and a reload both change inference_workers

    # -- main process ---------------------------------------------------------------------
    def _perform_graceful_shutdown(self, manager, uvicorn_workers, shutdown_reason: str = "normal") -> None:
        self._stopping = True  # workers that exit from now on are not restarted
        super()._perform_graceful_shutdown(manager, uvicorn_workers, shutdown_reason)

    def _start_worker_monitoring(self, manager, uvicorn_workers) -> None:
        threading.Thread(target=self._supervise, daemon=True, name="seq2seq-supervisor").start()

    def _locate(self, index: int) -> tuple[ls.LitAPI, int]:
        """The LitAPI and its own worker id of ``self.inference_workers[index]``."""
        for lit_api in self.litapi_connector:
            count = len(self._inference_workers_config_for_api(lit_api.api_path))
            if index < count:
                return lit_api, index
            index -= count
        raise IndexError(index)

    def _status(self, index: int) -> str | None:
        lit_api, worker_id = self._locate(index)
        return self.workers_setup_status.get(f"{lit_api.api_path.split('/')[-1]}_{worker_id}")

    def _supervise(self) -> None:
        setup_failures = [0] * len(self.inference_workers)
        left_at: dict[int, float] = {}  # workers that exited with status 0, and when it was seen
        gone: set[int] = set()  # workers that died during shutdown
        try:
            while len(gone) < len(self.inference_workers):
                with self._lock:
                    if not self._check_workers(setup_failures, left_at, gone):
                        return
                time.sleep(self.poll_s)
            self._no_workers.value = 1  # queued requests too: nobody will take them
        except Exception:  # a broken Manager (shutdown under way); never let the thread die silently
            if not self._stopping:
                logger.exception("worker supervision stopped")

    def _check_workers(self, setup_failures: list[int], left_at: dict[int, float], gone: set[int]) -> bool:
        """One look at every worker, restarting the dead; False once the server gives up."""
        for index, proc in enumerate(self.inference_workers):
            if proc.is_alive():  # (the status is a Manager call: only asked when needed)
                if setup_failures[index] and self._status(index) == WorkerSetupStatus.READY:
                    setup_failures[index] = 0
                continue
            if self._stopping:  # no restart, but no request waits for a worker that is gone
                if index not in gone:
                    gone.add(index)
                    self._deaths.value += 1
                continue
            status = self._status(index)
            if proc.exitcode == 0 and status == WorkerSetupStatus.READY:
                # it left its loop on SIGINT or a sentinel: a shutdown is probably under way
                if time.monotonic() - left_at.setdefault(index, time.monotonic()) < self.stop_grace_s:
                    continue
            left_at.pop(index, None)
            self._mark_stale()
            self._deaths.value += 1  # the HTTP processes answer their waiting requests 503
            if not self._restart(index, proc, status, setup_failures):
                return False
        return True

    def _mark_stale(self) -> None:
        """Workers skip the requests queued until now: the HTTP processes answer them 503."""
        for lit_api in self.litapi_connector:
            if isinstance(lit_api.loop, TranslationLoop):
                lit_api.loop.stale_before.value = time.monotonic()

    def _restart(self, index: int, proc: mp.Process, status: str | None, setup_failures: list[int]) -> bool:
        """Restart a dead worker, or give up (False) and make the server stop with ``failure``."""
        lit_api, worker_id = self._locate(index)
        what = f"inference worker {worker_id} (pid {proc.pid}) {describe_exit(proc.exitcode)}"
        if status != WorkerSetupStatus.READY:
            setup_failures[index] += 1
            what += f" before it was ready ({setup_failures[index]} times in a row)"
        if status == WorkerSetupStatus.ERROR:  # setup() raised: retrying would not help
            setup_failures[index] = self.max_setup_failures
            what = f"inference worker {worker_id} failed in setup (its error is logged above)"
        if setup_failures[index] >= self.max_setup_failures:
            self.failure = f"{what}: giving up"
            logger.error(self.failure)
            self._shutdown_event.set()  # the main thread shuts down, then exits non-zero
            return False
        logger.error("%s; restarting it", what)
        metrics.WORKER_RESTARTS.inc()
        self.inference_workers[index] = self.launch_single_inference_worker(lit_api, worker_id)
        return True

    def replace_worker(self, index: int) -> str | None:
        """A new worker for slot ``index``, started beside the old one; once ready it takes the slot
        and the old one retires (``serve.worker.reload``). None, or why the old one still serves."""
        lit_api, worker_id = self._locate(index)
        status = SetupStatus()
        with self._lock:  # launch_single_inference_worker reads the attribute: lend it ours
            shared, self.workers_setup_status = self.workers_setup_status, status
            try:
                new = self.launch_single_inference_worker(lit_api, worker_id)
            finally:
                self.workers_setup_status = shared
        deadline = time.monotonic() + self.load_deadline_s
        while status.value != WorkerSetupStatus.READY:
            failed = status.value == WorkerSetupStatus.ERROR or not new.is_alive()
            if failed or self._stopping or time.monotonic() > deadline:
                new.kill()
                new.join()
                why = "failed in setup (its error is logged above)" if failed else "was not ready in time"
                return f"the new inference worker {worker_id} {why}"
            time.sleep(self.poll_s)
        with self._lock:
            old, self.inference_workers[index] = self.inference_workers[index], new
        lit_api.loop.retiring.value = old.pid  # it finishes what it decodes and exits
        old.join(self.retire_deadline_s)
        if old.is_alive():  # stuck: its requests are answered 503, as for a death
            logger.error("retired inference worker %s (pid %s) did not stop: killing it", worker_id, old.pid)
            old.kill()
            old.join()
            self._deaths.value += 1
        lit_api.loop.retiring.value = 0
        return None

    # -- HTTP processes -------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        async with super().lifespan(app):
            watcher = asyncio.create_task(self._fail_orphaned_requests(), name="seq2seq-orphans")
            try:
                yield
            finally:
                watcher.cancel()

    async def _fail_orphaned_requests(self) -> None:
        """Answer 503 to every request this process waits for when a worker dies, and to all once
        every worker is gone (module docstring)."""
        seen = self._deaths.value
        died = HTTPException(
            503,
            "the inference worker died while translating this request (out of memory?); "
            "it is being restarted, retry in a few seconds",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        while True:
            await asyncio.sleep(self.poll_s)
            if self._no_workers.value:
                self._fail(HTTPException(503, "the server is shutting down"))
            elif self._deaths.value != seen:
                seen = self._deaths.value
                self._fail(died)

    def _fail(self, error: HTTPException) -> None:
        item: ResponseBufferItem
        for item in list(self.response_buffer.values()):
            if not item.event.is_set():
                item.response = (error, LitAPIStatus.ERROR)
                if item.response_queue is not None:  # a streaming request
                    item.response_queue.append((error, LitAPIStatus.ERROR))
                item.event.set()
