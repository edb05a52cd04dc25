"""Who is calling, with which experiment, and may they: what services are handed."""

from __future__ import annotations

from dataclasses import dataclass, field

from slices_blueprint.core.errors import Forbidden
from slices_blueprint.core.security import VerifiedToken
from slices_blueprint.identity.models import Experiment, User


@dataclass
class Caller:
    """The verified caller of one request."""

    kind: str  # "user" | "experiment"
    token: VerifiedToken
    user: User | None = None
    experiment: Experiment | None = None
    is_admin: bool = False
    project_ids: set[str] = field(default_factory=set)

    @property
    def actor(self) -> str:
        """Who to name in the audit trail."""
        if self.user:
            return self.user.id
        return str(self.token.claims.get("user") or self.token.subject)

    def require_experiment(self) -> Experiment:
        if self.experiment is None:
            raise Forbidden("this operation needs an experiment token (slices experiment jwt <exp>)")
        return self.experiment

    def require_admin(self) -> User:
        if not (self.user and self.is_admin):
            raise Forbidden("this operation is for site administrators")
        return self.user
