"""Network helpers for attack tests: a loopback listener playing the attacker's endpoint, and
a fence that keeps this process's connections on loopback.

The fence wraps ``socket.socket.connect`` for the test's duration (the service under test runs
in this process): a connection to anything but 127.0.0.0/8 or ::1 is recorded and refused
before a packet leaves, so even a regressed guard cannot make a test contact a real address.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse (and list) every connection this process attempts to a non-loopback address."""
    attempts: list[str] = []
    original = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            attempts.append(host)
            raise ConnectionRefusedError(f"test fence: no connection to {host}")
        original(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


class LoopbackListener:
    """Accepts connections on 127.0.0.1 in a thread and keeps every byte received."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received += conn.recv(65536)
                except OSError:
                    pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def assert_untouched(self) -> None:
        """Nothing connected, a moment after the refusal (it is synchronous: whatever the
        service would send, it sent before answering)."""
        time.sleep(0.3)
        self.__exit__(None, None, None)
        assert (self.connections, self.received) == (0, b""), self.received[:300]
