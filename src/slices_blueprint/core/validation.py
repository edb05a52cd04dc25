"""Small checks shared by request schemas."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def refuse_repeats(names: Iterable[str], what: str) -> None:
    """A ``ValueError`` naming every name given more than once (for pydantic validators,
    which turn it into a 422 naming the field)."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{what} repeated: {', '.join(repeated)}")
