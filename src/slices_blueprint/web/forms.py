"""The create-resources form: parsing it into the API's ``ResourcesRequest`` and putting the
API's error messages next to the fields they concern."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.models import utcnow
from slices_blueprint.resources.schemas import ResourcesRequest

MAX_COUNT = 20
# API field -> form field
FIELD_OF = {
    "friendly_name": "name", "resources": "name", "disk_image_id": "image", "flavor_id": "flavor",
    "ssh_authorized_keys": "ssh_keys", "userdata": "userdata", "network_interfaces": "networks",
    "expires_at": "duration_hours", "request_config": "options",
}
MESSAGE_FIELD = re.compile(r"^(?:resources\.\d+\.)?(\w+):|^resources\.\d+:")


@dataclass
class CreateForm:
    """The form's values as typed (strings), so a rejected form is shown as it was sent."""

    image: str = ""
    flavor: str = ""
    name: str = ""
    count: str = "1"
    networks: str = ""
    public_ipv4: bool = False
    ssh_keys: str = ""
    userdata: str = ""
    duration_hours: str = "24"
    options: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def names(self, count: int) -> list[str]:
        return [self.name] if count == 1 else [f"{self.name}-{i}" for i in range(1, count + 1)]

    def to_request(self) -> ResourcesRequest:
        """The API request, or ``FieldErrors`` naming every field at fault."""
        errors = {f: f"choose {what}" for f, what in (("image", "an image"), ("flavor", "a flavor")) if not getattr(self, f)}
        count = int(self.count) if self.count.isdigit() else 0
        if not 1 <= count <= MAX_COUNT:
            errors["count"], count = f"a whole number from 1 to {MAX_COUNT}", 1
        try:
            hours = float(self.duration_hours)
        except ValueError:
            hours = 0
        if not hours > 0:
            errors["duration_hours"], hours = "a positive number of hours", 1
        try:
            config = json.loads(self.options) if self.options.strip() else {}
        except ValueError:
            config = None
        if not isinstance(config, dict):
            errors["options"], config = 'a JSON object, e.g. {"key": "value"}', {}
        spec = {
            "disk_image_id": self.image, "flavor_id": self.flavor, "userdata": self.userdata or None,
            "network_interfaces": [n.strip() for n in self.networks.split(",") if n.strip()],
            "public_ipv4": self.public_ipv4,
            "ssh_authorized_keys": [k for k in self.ssh_keys.splitlines() if k.strip()],
            "request_config": config,
        }
        try:
            request = ResourcesRequest(
                request_id=self.request_id, expires_at=utcnow() + dt.timedelta(hours=hours),
                resources=[{"friendly_name": n, **spec} for n in self.names(count)],
            )
        except ValidationError as exc:
            errors = validation_errors(exc) | errors
        if errors:
            raise FieldErrors(errors)
        return request


class FieldErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def validation_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        names = [str(p) for p in error["loc"] if isinstance(p, str)]
        target = next((FIELD_OF[n] for n in reversed(names) if n in FIELD_OF), "form")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            message = "lower-case letters, digits and '-', at most 63, not starting or ending with '-'"
        errors.setdefault(target, message)
    return errors


def message_field(detail: str) -> tuple[str, str]:
    """The form field an API error message (``resources.0.flavor_id: ...``) is about, and
    the message without that prefix."""
    match = MESSAGE_FIELD.match(detail)
    if match is None:
        return "form", detail
    name = match.group(1)
    if name and name not in FIELD_OF:
        return "form", detail
    return FIELD_OF[name] if name else "flavor", detail[match.end():].strip()


def fits(image: DiskImage, flavor: Flavor) -> bool:
    """The flavor can run the image: same type, enough RAM and disk."""
    return (
        image.flavor_type == flavor.flavor_type
        and flavor.ram_mib >= image.min_ram_mib
        and (not flavor.disk_mb or flavor.disk_mb >= image.min_disk_mb)
    )
