"""Answers from the inference workers to the HTTP processes over Unix sockets.

LitServe's default transport sends every answer through a queue of its Manager process: a round
trip there for the worker, and for the HTTP process an ``asyncio.to_thread`` call that waits on
the Manager; about 1.5 ms of a lone request's time here. ``SocketTransport`` is a LitServe
``MessageTransport`` (the interface its own transports implement): the main process binds one
Unix socket per HTTP process in a private directory before LitServe forks them; each HTTP
process accepts on its own socket in its event loop, and each worker thread connects once and
writes length-prefixed pickles. A worker killed mid-message breaks only its own connection (the
HTTP process drops it); a restarted worker connects afresh. Requests go the other way as
datagrams on one socket that every worker reads (``serve/requestqueue.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import threading
from typing import Any

from litserve.transport.base import MessageTransport

logger = logging.getLogger(__name__)

HEADER = 4  # bytes of big-endian message length before each pickle


class SocketTransport(MessageTransport):
    """One Unix socket per HTTP process (consumer); see the module docstring."""

    def __init__(self, directory: str, consumers: int) -> None:
        self.paths = [os.path.join(directory, f"answers-{i}.sock") for i in range(consumers)]
        self.listeners: list[socket.socket] = []
        for path in self.paths:  # bound here, in the main process, so every forked HTTP process has its own
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(64)
            self.listeners.append(listener)
        self._init_process_state()

    def _init_process_state(self) -> None:
        self.local = threading.local()  # worker side: each thread's connections, by consumer
        self.inbox: asyncio.Queue | None = None  # HTTP side: messages read from the socket
        self.server: asyncio.AbstractServer | None = None

    def __getstate__(self) -> dict:
        """What a spawned worker gets: the paths (sockets, threads and queues stay in this process)."""
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.paths, self.listeners = state["paths"], []
        self._init_process_state()

    # -- worker side ------------------------------------------------------------------------
    def send(self, item: Any, consumer_id: int) -> None:
        connections = self.local.__dict__.setdefault("connections", {})
        conn = connections.get(consumer_id)
        if conn is None:
            conn = connections[consumer_id] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(self.paths[consumer_id])
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            conn.sendall(len(data).to_bytes(HEADER, "big") + data)
        except OSError:  # the HTTP process is gone (shutting down): connect again next time
            connections.pop(consumer_id, None)
            conn.close()
            raise

    # -- HTTP side --------------------------------------------------------------------------
    async def areceive(self, consumer_id: int, timeout: float | None = None, block: bool = True) -> Any:
        if self.server is None:
            self.inbox = asyncio.Queue()
            self.server = await asyncio.start_unix_server(self._read, sock=self.listeners[consumer_id])
        if timeout is None:
            return await self.inbox.get()
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None  # as LitServe's transports answer a receive that timed out

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker thread's connection: messages until it closes (or breaks off mid-message)."""
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(HEADER), "big")
                self.inbox.put_nowait(pickle.loads(await reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker exited or was killed; a restarted one connects again
        except Exception:
            logger.exception("dropped a broken connection from an inference worker")
        finally:
            writer.close()

    def close(self, send_sentinel: bool = True) -> None:
        """In the main process at shutdown: stop listening (the HTTP processes' loops end on their own)."""
        for listener in self.listeners:
            listener.close()
        for path in self.paths:
            if os.path.exists(path):
                os.unlink(path)
