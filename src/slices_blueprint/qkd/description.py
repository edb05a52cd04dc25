"""The declarative description of a QKD network: nodes, their SAEs, and the links between.

Example (YAML, as ``slices-blueprint qkd create --from-file`` reads it)::

    name: two-nodes
    nodes:
      - name: alice
        saes: [alice-app]
      - name: bob
        saes:
          - id: bob-app
            machine: vm-bob   # a resource of the experiment: the credentials go into it
    links:
      - between: [alice, bob]
        length_km: 25
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from slices_blueprint.core.ids import id_schema
from slices_blueprint.core.validation import UtcDatetime, refuse_repeats
from slices_blueprint.qkd.physics import LinkParameters
from slices_blueprint.resources.schemas import NAME_PATTERN

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]
SaeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class SaeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: SaeId = Field(description="the SAE_ID its certificate carries (unique in the network)")
    machine: str | None = Field(
        default=None, pattern=NAME_PATTERN,
        description="the friendly name of a resource of the same experiment (VM, microVM or pod): "
                    "its credentials and its KME's URL are placed in that machine when it is "
                    "created or reset, under /etc/qkd/<SAE_ID>/, and never downloadable")


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="the node's name (lower-case letters, digits and dashes)")
    saes: list[SaeId | SaeSpec] = Field(default_factory=list, max_length=16,
                                        description="the applications that take keys at this node")
    device: str | None = Field(default=None, max_length=63, description=(
        "a real QKD device of this site (by name): the node's KME passes key requests to it; "
        "omitted: an emulated KME"))

    def sae_specs(self) -> list[SaeSpec]:
        return [s if isinstance(s, SaeSpec) else SaeSpec(id=s) for s in self.saes]


class LinkSpec(LinkParameters):
    between: tuple[Name, Name] = Field(description="the two nodes the link joins")
    max_key_count: int = Field(default=100_000, ge=1, le=10_000_000,
                               description="keys (of key_size bits) each end's pool holds at most")

    def parameters(self) -> LinkParameters:
        """The physical parameters alone."""
        return LinkParameters.model_validate(self.model_dump(include=set(LinkParameters.model_fields)))


class NetworkDescription(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="unique among the experiment's live QKD networks")
    nodes: list[NodeSpec] = Field(min_length=2, max_length=16)
    links: list[LinkSpec] = Field(min_length=1, max_length=64)
    expires_at: UtcDatetime | None = Field(
        default=None, description="default: the site's default lifetime, capped by the experiment's")
    reservation_id: str | None = Field(
        default=None, json_schema_extra=id_schema("reservation"),
        description="run inside this reservation (the experiment's, or its project's): made at its start "
                    "(pending until then), expiring at its end at the latest, deleted when it ends")

    @model_validator(mode="after")
    def _consistent(self) -> NetworkDescription:
        nodes = [n.name for n in self.nodes]
        devices = {n.name: n.device for n in self.nodes}
        refuse_repeats(nodes, "node names")
        refuse_repeats([d for d in devices.values() if d is not None], "devices")
        refuse_repeats([s.id for n in self.nodes for s in n.sae_specs()], "SAE ids")
        pairs = []
        for i, link in enumerate(self.links):
            a, b = link.between
            for end in (a, b):
                if end not in nodes:
                    raise ValueError(f"links.{i}.between: no node named {end!r}")
            if a == b:
                raise ValueError(f"links.{i}.between: a link joins two different nodes")
            if (devices[a] is None) != (devices[b] is None):
                raise ValueError(f"links.{i}.between: a link joins two emulated nodes or two device "
                                 f"nodes ({a!r} and {b!r} are one of each)")
            pairs.append("-".join(sorted((a, b))))
        refuse_repeats(pairs, "links")
        return self

