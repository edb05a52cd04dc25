"""Who is calling, with which experiment, and may they: what services are handed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select

from slices_blueprint.core.errors import Forbidden
from slices_blueprint.core.security import VerifiedToken
from slices_blueprint.identity.models import Experiment, User

SelectT = TypeVar("SelectT", bound=Select)


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

    def visible(self, query: SelectT, *, experiment_id: Any, project_id: Any, created_by: Any) -> SelectT:
        """``query`` narrowed to the rows the caller may see, given their experiment, project
        and creator columns: the experiment's with an experiment token; with a user token,
        their projects' and their own; everything for admins."""
        if self.experiment is not None:
            return query.where(experiment_id == self.experiment.id)
        if self.is_admin:
            return query
        assert self.user is not None
        return query.where(project_id.in_(self.project_ids) | (created_by == self.user.id))

    def visible_sql(self, *, experiment_id: str = "experiment_id", project_id: str = "project_id",
                    created_by: str = "created_by") -> tuple[str, dict[str, Any]]:
        """The rule of :meth:`visible` as a condition of plain SQL on the given columns, and its
        parameters (psycopg's ``%(name)s``, named ``scope_*``). The text depends only on the
        kind of caller, so a statement built with it can be built once and prepared."""
        if self.experiment is not None:
            return f"{experiment_id} = %(scope_experiment)s", {"scope_experiment": self.experiment.id}
        if self.is_admin:
            return "TRUE", {}
        assert self.user is not None
        return (f"({project_id} = ANY(%(scope_projects)s::text[]) OR {created_by} = %(scope_user)s)",
                {"scope_projects": sorted(self.project_ids), "scope_user": self.user.id})

    def sees(self, *, experiment_id: str | None, project_id: str | None, created_by: str | None) -> bool:
        """The rule of :meth:`visible` for one row's values."""
        if self.experiment is not None:
            return experiment_id == self.experiment.id
        if self.is_admin:
            return True
        assert self.user is not None
        return project_id in self.project_ids or (created_by is not None and created_by == self.user.id)

    def require_admin(self) -> User:
        if not (self.user and self.is_admin):
            raise Forbidden("this operation is for site administrators")
        return self.user
