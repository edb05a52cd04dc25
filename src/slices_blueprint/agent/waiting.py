"""Waiting for a condition with a deadline (tenacity does the polling)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryError, retry_if_result, stop_after_delay, wait_fixed


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Return once ``check()`` is true; raise ``TimeoutError`` naming ``what`` after ``timeout``."""

    async def attempt() -> bool:
        result = check()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    retrying = AsyncRetrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda ok: not ok),
    )
    try:
        await retrying(attempt)
    except RetryError as exc:
        raise TimeoutError(f"{what} not within {timeout:g} s") from exc
