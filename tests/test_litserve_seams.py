"""Pins of every LitServe internal that ``serve.worker.loop`` and ``serve.worker.supervisor`` rely on.

Each test fails when a LitServe release changes what the seam assumes, so that an upgrade fails
here instead of hanging requests in production. The behaviour they carry is tested end to end in
test_serve_ops.py and test_worker_restart.py.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import time
from queue import Queue

import litserve
import pytest
from fastapi import HTTPException
from litserve import LitAPI, LitServer
from litserve.loops import LitLoop
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError, collate_requests
from litserve.utils import (
    LitAPIStatus,
    LoopResponseType,
    PickleableHTTPException,
    ResponseBufferItem,
    WorkerSetupStatus,
)

from serve.worker import loop as our_loop
from serve.worker import supervisor


class Sent:
    """A transport that keeps what the loop sends."""

    def __init__(self) -> None:
        self.items: list[tuple] = []

    def send(self, item, consumer_id: int) -> None:
        self.items.append((consumer_id, item))


def test_the_pinned_version() -> None:
    """The docstrings name lines of this release: read them again before moving the pin."""
    assert litserve.__version__ == "0.2.19"
    for module in (our_loop, supervisor):
        assert "litserve 0.2.19" in module.__doc__


def test_queue_items_and_the_sentinel() -> None:
    """LitServe's own collection reads items (queue id, uid, enqueued at, request), and the
    sentinel (None, None, None, None) stops the loop."""
    assert _SENTINEL_VALUE == (None, None, None, None)
    api = LitAPI(max_batch_size=4, batch_timeout=0)
    api.request_timeout = 30.0
    loop, queue = LitLoop(), Queue()
    queue.put((3, "uid-1", time.monotonic(), {"text": "x"}))
    payloads, timed_out = collate_requests(loop, api, queue, Sent())
    assert payloads == [(3, "uid-1", {"text": "x"})] and timed_out == []
    queue.put(_SENTINEL_VALUE)
    with pytest.raises(_StopLoopError):
        collate_requests(loop, api, queue, Sent())


def test_answers_and_errors_as_the_http_side_reads_them() -> None:
    """put_response's wire tuple (uid, (data, status, type, worker id)) and HTTPExceptions that
    pickle back into HTTPExceptions with their status."""
    loop, transport = LitLoop(), Sent()
    loop.put_response(transport, 1, "u", {"ok": 1}, LitAPIStatus.OK, LoopResponseType.REGULAR)
    ((consumer, (uid, (data, status, kind, _worker))),) = transport.items
    assert (consumer, uid, data, status, kind) == (1, "u", {"ok": 1}, "OK", LoopResponseType.REGULAR)
    error = pickle.loads(pickle.dumps(PickleableHTTPException.from_exception(HTTPException(504, "late"))))
    assert type(error) is HTTPException and (error.status_code, error.detail) == (504, "late")
    assert (LitAPIStatus.START, LitAPIStatus.OK, LitAPIStatus.ERROR) == ("START", "OK", "ERROR")


def test_the_http_side_waits_on_a_buffer_item_event() -> None:
    """What the supervisor fails a request through: the item LitServe's handler waits on, answered
    by setting ``response`` to (data, status) and its ``event``."""
    source = inspect.getsource(litserve.server.RegularRequestHandler.handle_request)
    assert "self.server.response_buffer[uid] = ResponseBufferItem(event)" in source
    assert "response, status = response_buffer_item.response" in source
    assert "await event.wait()" in source
    item = ResponseBufferItem(event=asyncio.Event())
    assert (item.response, item.response_queue) == (None, None)


def test_the_server_attributes_the_supervisor_uses() -> None:
    for name in ("_start_worker_monitoring", "_perform_graceful_shutdown", "_inference_workers_config_for_api",
                 "launch_single_inference_worker", "lifespan", "register_endpoints"):  # fmt: skip
        assert callable(getattr(LitServer, name)), name
    source = inspect.getsource(LitServer.__init__)
    assert "self.response_buffer" in source
    # restart_workers=False: LitLoop sends no START notices (our loop sends none at all)
    assert "self._restart_workers" in inspect.getsource(LitLoop.put_response)
    assert "_start_worker_monitoring(" in inspect.getsource(LitServer.run)
    assert "self._shutdown_event = manager.Event()" in inspect.getsource(LitServer._init_manager)
    assert "self.inference_workers.extend(" in inspect.getsource(LitServer.run)  # the processes, by index
    assert (WorkerSetupStatus.STARTING, WorkerSetupStatus.READY, WorkerSetupStatus.ERROR) == (
        "starting",
        "ready",
        "error",
    )
    status_key = inspect.getsource(LitServer.launch_single_inference_worker)
    assert 'self.workers_setup_status[f"{endpoint}_{worker_id}"]' in status_key  # what _status reads


def test_a_reload_lends_its_new_worker_a_setup_status_of_its_own() -> None:
    """``/health`` wants every entry of the shared status READY, and ``launch_single_inference_worker``
    hands the process whatever ``self.workers_setup_status`` is when called: ``replace_worker`` lends
    it a ``SetupStatus``, which takes the writes ``inference_worker`` makes."""
    health = inspect.getsource(LitServer._register_internal_endpoints)
    assert "v == WorkerSetupStatus.READY for v in self.workers_setup_status.values()" in health
    launch = inspect.getsource(LitServer.launch_single_inference_worker)
    assert "self.workers_setup_status,\n" in launch  # the attribute, read at call time
    worker = inspect.getsource(litserve.loops.loops.inference_worker)
    assert "if workers_setup_status:" in worker
    assert 'workers_setup_status[f"{endpoint}_{worker_id}"] = WorkerSetupStatus.READY' in worker
    status = supervisor.SetupStatus()
    status["translate_0"] = WorkerSetupStatus.STARTING
    assert bool(status) and status.value == "starting"
    status["translate_0"] = WorkerSetupStatus.READY
    assert status.value == WorkerSetupStatus.READY
