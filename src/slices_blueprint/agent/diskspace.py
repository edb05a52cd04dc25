"""Telling a full data directory from other failures, and saying so plainly.

A create that runs out of space fails in many places: Python's own writes (``OSError`` with
``ENOSPC`` or ``EDQUOT``) or a helper tool (``mkfs.ext4``, ``resize2fs``), whose stderr
carries the same C library message. Either way the caller gets one clear reason naming the
folder and what is left in it. A start, which writes little itself, is refused before it
begins when the folder is (nearly) full: the guest would soon fail writing to its disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_MESSAGES = tuple(os.strerror(code) for code in FULL_ERRNOS)


class DataDirFull(Exception):
    """The agent's data directory has no room for what was asked (answered 507)."""


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write refused for lack of space."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return True
        if any(message in str(seen) for message in FULL_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def full_reason(data_dir: Path, what: str, exc: BaseException) -> str:
    """The reason given to the caller: what failed, where, and the room left there."""
    free_mib = shutil.disk_usage(data_dir).free // 2**20
    return (f"no space left for {what} in the agent's data directory {data_dir} "
            f"({free_mib} MiB free): {exc}")


MIN_FREE_TO_START_MIB = 8  # the record, console and VMM files, and room for the guest's disk to grow


def require_room_to_start(data_dir: Path, vm_id: str) -> None:
    """Raise :class:`DataDirFull` when ``data_dir`` has less than
    :data:`MIN_FREE_TO_START_MIB` free for VM ``vm_id`` to start."""
    free_mib = shutil.disk_usage(data_dir).free // 2**20
    if free_mib < MIN_FREE_TO_START_MIB:
        raise DataDirFull(f"no space left for VM {vm_id} to start in the agent's data directory "
                          f"{data_dir} ({free_mib} MiB free, {MIN_FREE_TO_START_MIB} MiB needed)")
