"""Each VM's serial console on disk, capped: ``console.log`` plus at most one ``console.log.1``.

The VMM never writes the files itself: it hands the agent a byte stream (QEMU a Unix socket,
Firecracker a FIFO), which :func:`record` copies into :class:`ConsoleLog`, in batches. When
``console.log`` would pass half the cap it replaces ``console.log.1``, so both together stay
under ``console_log_max_bytes`` whatever the guest prints. While the agent is down nothing
reads the stream: QEMU drops the output, Firecracker's writes fail; nothing reaches the disk.
Readers only ever read the tail. The ready marker is noted in a flag file as it streams by,
so a guest flooding its console later cannot push it out of sight.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from slices_blueprint.agent.default_image import READY_MARKER

log = structlog.get_logger(__name__)

CONSOLE = "console.log"
ROTATED = "console.log.1"
READY_FLAG = "guest-ready"
CHUNK = 64 * 1024
# After a short read, let output gather before the next: QEMU writes the serial port a byte
# at a time, and one wake-up per byte would cost the agent a third of a core per flooding VM.
# This bounds a VM's console to about 46 KiB/s (4 times a 115200-baud line) for 3 % of a core.
BATCH_SECONDS = 0.005
TAIL_BYTES = 1024 * 1024  # at most this much of the console is read to answer a tail


class ConsoleLog:
    """The capped console files of one VM directory."""

    def __init__(self, vm_dir: Path, max_bytes: int) -> None:
        self.vm_dir = vm_dir
        self.half = max(max_bytes // 2, CHUNK)
        self._marker_carry = b""
        self._fd: int | None = None
        self._size = 0

    @property
    def path(self) -> Path:
        return self.vm_dir / CONSOLE

    def reset(self) -> None:
        """Forget the previous boot's console and readiness."""
        for name in (CONSOLE, ROTATED, READY_FLAG):
            (self.vm_dir / name).unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        """Append ``data`` (at most ``CHUNK`` bytes), rotating first if it would pass the cap."""
        self._note_ready(data)
        if self._fd is not None and self._size + len(data) > self.half:
            self.close()
            os.replace(self.path, self.vm_dir / ROTATED)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        self._size += os.write(self._fd, data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _note_ready(self, data: bytes) -> None:
        marker = READY_MARKER.encode()
        if marker in self._marker_carry + data:
            (self.vm_dir / READY_FLAG).touch(mode=0o600)
        self._marker_carry = (self._marker_carry + data)[-(len(marker) - 1):]

    def ready(self) -> bool:
        return (self.vm_dir / READY_FLAG).exists()

    def tail(self, lines: int) -> str:
        """The last ``lines`` lines, read from at most the last ``TAIL_BYTES`` on disk."""
        parts: list[bytes] = []
        budget = TAIL_BYTES
        for name in (CONSOLE, ROTATED):
            try:
                with (self.vm_dir / name).open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - budget))
                    data = f.read(budget)
            except FileNotFoundError:
                continue
            parts.insert(0, data)
            budget -= len(data)
            if budget <= 0:
                break
        text = b"".join(parts).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def record(vm_id: str, fd: int, console: ConsoleLog) -> None:
    """Copy the VM's console (a non-blocking fd, closed at the end) into ``console`` until the
    VMM closes it. Between reads the fd is not watched, so output gathers in the kernel and a
    flood costs a few wake-ups a second, not one per write."""
    try:
        while True:
            await _readable(fd)
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                break
            console.write(chunk)
            if len(chunk) < CHUNK:
                await asyncio.sleep(BATCH_SECONDS)
    except OSError as exc:
        log.warning("agent.console_lost", vm_id=vm_id, error=str(exc))
    finally:
        os.close(fd)
        console.close()
    log.info("agent.console_closed", vm_id=vm_id)
