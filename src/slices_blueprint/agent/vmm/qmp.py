"""A minimal QEMU Machine Protocol client: one connection per command, over a Unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from slices_blueprint.agent.vmm.base import VMMError


async def qmp(socket_path: Path, command: str, arguments: dict[str, Any] | None = None,
              timeout: float = 5.0) -> Any:
    """Run one QMP command and answer its ``return`` value."""
    try:
        return await asyncio.wait_for(_exchange(socket_path, command, arguments), timeout)
    except (TimeoutError, OSError) as exc:
        raise VMMError(f"QMP {command} failed: {exc or type(exc).__name__}") from exc


async def _exchange(socket_path: Path, command: str, arguments: dict[str, Any] | None) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        await _reply(reader)  # the greeting
        for message in ({"execute": "qmp_capabilities"},
                        {"execute": command, **({"arguments": arguments} if arguments else {})}):
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            answer = await _reply(reader)
        return answer.get("return")
    finally:
        writer.close()


async def _reply(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The next message that is not an asynchronous event; QMP errors raise."""
    while True:
        line = await reader.readline()
        if not line:
            raise VMMError("QMP connection closed")
        message = json.loads(line)
        if "event" in message:
            continue
        if "error" in message:
            raise VMMError(f"QMP error: {message['error'].get('desc', message['error'])}")
        return message
