"""An experiment's record packed as an RO-Crate (``rocrate``): the experiment file, its audit
trail, and the run's metadata, with who exported it, when, from which site and version."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

FILE = "experiment.yaml"
AUDIT = "audit-trail.json"
METADATA = "run-metadata.json"


def file_yaml(file: dict[str, Any]) -> str:
    """The experiment file as YAML (the keys in the schema's order)."""
    return yaml.safe_dump(file, sort_keys=False, allow_unicode=True)


def write_crate(record: dict[str, Any], out: Path) -> None:
    """Write the crate to ``out``: a directory, or a zip file when its name ends in .zip."""
    # rocrate is slow to import: only here, so the CLI's other commands start quickly
    from rocrate.model import ContextEntity, Person, SoftwareApplication
    from rocrate.rocrate import ROCrate

    meta = record["metadata"]
    crate = ROCrate()
    crate.name = f"SLICES experiment {meta['experiment_id']}"
    crate.description = "An experiment's resources, QKD networks and reservations, with its audit trail"
    crate.root_dataset["datePublished"] = meta["exported_at"]
    crate.root_dataset["license"] = "https://creativecommons.org/licenses/by/4.0/"
    software = crate.add(SoftwareApplication(crate, "#slices-blueprint", properties={
        "name": "slices-blueprint", "version": meta["slices_blueprint_version"]}))
    agent = crate.add(Person(crate, f"#{meta['exported_by']}", properties={"name": meta["exported_by"]}))
    parts = [
        (FILE, file_yaml(record["file"]), "application/yaml", ("The experiment file (schema version "
         f"{record['file']['schema_version']}): `slices-blueprint experiment apply` recreates it")),
        (AUDIT, json.dumps(record["events"], indent=2, default=str), "application/json",
         "The experiment's audit trail"),
        (METADATA, json.dumps(meta, indent=2), "application/json",
         "Who exported it, when, from which site and version; the images in use by location"),
    ]
    files = [crate.add_file(io.StringIO(text), dest_path=name, properties={
        "name": name, "encodingFormat": fmt, "description": description}) for name, text, fmt, description in parts]
    crate.add(ContextEntity(crate, "#export", properties={
        "@type": "CreateAction", "name": "Export of the experiment", "endTime": meta["exported_at"],
        "agent": {"@id": agent.id}, "instrument": {"@id": software.id},
        "result": [{"@id": f.id} for f in files],
        "location": meta["site_id"]}))
    if out.suffix == ".zip":
        crate.write_zip(out)
    else:
        crate.write(out)
