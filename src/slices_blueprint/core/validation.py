"""Small checks shared by request schemas."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def refuse_repeats(names: Iterable[str], what: str) -> None:
    """A ``ValueError`` naming every name given more than once (for pydantic validators,
    which turn it into a 422 naming the field)."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{what} repeated: {', '.join(repeated)}")


def _in_utc(moment: dt.datetime) -> dt.datetime:
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A moment given with its UTC offset (a naive one is refused), kept in UTC: Python accepts
offsets up to ±24 h, PostgreSQL only up to ±15:59, so a moment is never sent with the offset
it was given in (``9537-07-24T09:52-17:18`` once answered 500)."""


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is required, not true or false")  # noqa: TRY004 - pydantic answers only ValueError with a 422
    return value


Integer = Annotated[int, BeforeValidator(_not_a_bool)]
"""An integer; JSON's ``true`` and ``false`` are refused (pydantic's lax mode reads them as
1 and 0, which the OpenAPI document's ``integer`` does not allow)."""
