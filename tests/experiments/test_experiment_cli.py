"""``slices-blueprint experiment`` as a real process against the live service, and the
RO-Crate it packs, read back with the rocrate library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from rocrate.rocrate import ROCrate

from tests.experiments.conftest import ExpApi


@pytest.fixture(scope="module")
def cli(exp_live):
    def run(*args: str, token: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "SLICES_BLUEPRINT_URL": exp_live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
               "SLICES_BLUEPRINT_TOKEN": token, "COLUMNS": "200"}
        result = subprocess.run([sys.executable, "-m", "slices_blueprint", "experiment", *args], env=env, input=stdin,
                                capture_output=True, text=True, timeout=180, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_export_dry_run_apply(cli, api: ExpApi, catalog: tuple[str, str], tmp_path: Path) -> None:
    token = api.experiment(*catalog)
    path = tmp_path / "exp.yaml"
    cli("export", "--out", str(path), token=token)
    exported = yaml.safe_load(path.read_text())
    assert exported == api.export(token)
    edited = {**exported, "resources": [r for r in exported["resources"] if r["name"] == "web"]}
    edited["resources"][0] = {**edited["resources"][0], "public_ipv4": True}
    path.write_text(yaml.safe_dump(edited))

    dry = cli("apply", str(path), "--dry-run", token=token).stdout
    assert "change" in dry and "web" in dry and "delete" in dry and "db" in dry and "public_ipv4" in dry
    assert api.export(token) == exported
    refused = cli("apply", str(path), token=token, check=False, stdin="n\n")
    assert refused.returncode == 1 and api.export(token) == exported

    cli("apply", str(path), "--yes", token=token)
    assert api.export(token) == edited
    assert "Nothing to change" in cli("apply", str(path), "--yes", token=token).stdout


def test_missing_flavor_listed(cli, api: ExpApi, catalog: tuple[str, str], tmp_path: Path) -> None:
    token = api.experiment(*catalog)
    exported = api.export(token)
    exported["resources"][0]["image"].update(name="centos-9", location="td-centos-9")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exported))
    refused = cli("apply", str(path), "--yes", token=token, check=False)
    assert refused.returncode == 1 and "lacks: image 'centos-9'" in refused.stderr


@pytest.mark.parametrize("name", ["crate", "crate.zip"])
def test_ro_crate(cli, api: ExpApi, catalog: tuple[str, str], tmp_path: Path, name: str) -> None:
    token = api.experiment(*catalog)
    cli("export", "--format", "ro-crate", "--out", str(tmp_path / name), token=token)
    crate = ROCrate(tmp_path / name)
    ids = {e.id for e in crate.get_entities()}
    assert {"experiment.yaml", "audit-trail.json", "run-metadata.json", "#slices-blueprint"} <= ids
    assert crate.dereference("#export").type == "CreateAction"
    folder = tmp_path / name if name == "crate" else tmp_path / "unzipped"
    if name == "crate.zip":
        zipfile.ZipFile(tmp_path / name).extractall(folder)
    assert yaml.safe_load((folder / "experiment.yaml").read_text()) == api.export(token)
    events = json.loads((folder / "audit-trail.json").read_text())
    assert {"resource.create", "qkd_network.create", "reservation.create"} <= {e["action"] for e in events}
    metadata = json.loads((folder / "run-metadata.json").read_text())
    assert metadata["site_id"] == "test-site1" and metadata["images"][0]["location"] == "td-debian-12-exp"
