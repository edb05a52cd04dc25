"""Telling a full disk from other failures, in Python's errors and in a helper tool's."""

from __future__ import annotations

import errno
import os

from slices_blueprint.agent.diskspace import out_of_space
from slices_blueprint.agent.vmm.base import VMMError


def test_a_full_disk_is_recognised_however_it_is_reported() -> None:
    assert out_of_space(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert out_of_space(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
    tool = VMMError(f"resize2fs failed: resize2fs: {os.strerror(errno.ENOSPC)} while trying to resize")
    assert out_of_space(tool)
    try:
        try:
            raise OSError(errno.ENOSPC, "write")
        except OSError as exc:
            raise RuntimeError("copy failed") from exc
    except RuntimeError as wrapped:
        assert out_of_space(wrapped)


def test_other_failures_are_not_a_full_disk() -> None:
    assert not out_of_space(OSError(errno.EACCES, os.strerror(errno.EACCES)))
    assert not out_of_space(VMMError("mkfs.ext4 failed: bad option"))
