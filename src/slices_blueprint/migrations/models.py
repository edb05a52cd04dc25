"""Every domain's models, so that ``Base.metadata`` (what Alembic compares) knows all tables."""

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.models import Base
from slices_blueprint.credentials.models import Credential
from slices_blueprint.events.models import Event
from slices_blueprint.hosts.models import Host, HostBooking, HostEnrolment
from slices_blueprint.identity.models import Experiment, Project, User
from slices_blueprint.qkd.models import (
    QkdKey,
    QkdKeyDelivery,
    QkdLink,
    QkdLinkSample,
    QkdNetwork,
    QkdNode,
    QkdSae,
)
from slices_blueprint.quotas.models import ProjectQuota
from slices_blueprint.reservations.models import (
    Equipment,
    Reservation,
    ReservationLimit,
    ReservedEquipment,
)
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.models import Task
from slices_blueprint.telemetry.models import VMMetricSample
from slices_blueprint.web.models import RevokedWebSession

__all__ = [
    "Base",
    "ComputeResource",
    "Credential",
    "DiskImage",
    "Equipment",
    "Event",
    "Experiment",
    "Flavor",
    "Host",
    "HostBooking",
    "HostEnrolment",
    "Project",
    "ProjectQuota",
    "QkdKey",
    "QkdKeyDelivery",
    "QkdLink",
    "QkdLinkSample",
    "QkdNetwork",
    "QkdNode",
    "QkdSae",
    "Reservation",
    "ReservationLimit",
    "ReservedEquipment",
    "RevokedWebSession",
    "Task",
    "User",
    "VMMetricSample",
]
