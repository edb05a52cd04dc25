"""The reservation commands as real processes: an admin registers equipment on the service's
database, a user reserves, lists (with the time left), asks for availability, extends and
cancels over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.reservations.conftest import OwnApi, day


def _cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "slices_blueprint", *args], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120, check=False)
    assert not check or result.returncode == 0, result.stderr
    return result


def test_reserve_list_availability_extend_cancel(api: OwnApi, resv_live, unique: str, tmp_path: Path) -> None:
    admin_env = {"SLICES_BLUEPRINT_DATABASE_URL": resv_live.settings.database_url,
                 "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path), "SLICES_BLUEPRINT_LOG_LEVEL": "WARNING",
                 "SLICES_BLUEPRINT_SITE_ID": resv_live.settings.site_id}
    kind = f"fibre-spool-{unique}"
    for name in ("s1", "s2"):
        _cli("admin", "equipment", "add", f"{name}-{unique}", "--kind", kind, "-a", "length_km=25",
             "-a", "note=spare", env=admin_env)
    listed = _cli("admin", "equipment", "list", env=admin_env).stdout
    assert f"s1-{unique}\t{kind}\ttest-site1\tbookable\t" in listed and '"length_km": 25' in listed
    _cli("admin", "equipment", "hide", f"s2-{unique}", env=admin_env)
    refused = _cli("admin", "equipment", "add", f"s1-{unique}", "--kind", kind, env=admin_env, check=False)
    assert refused.returncode == 1 and "exists already" in refused.stderr

    env = {"SLICES_BLUEPRINT_URL": resv_live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
           "SLICES_BLUEPRINT_TOKEN": api.token("alice", f"a-{unique}", "e"), "COLUMNS": "250"}
    start = day(40)
    booked = json.loads(_cli("reserve", "--kind", kind, "--count", "1", "--start", start.strftime("%Y-%m-%dT%H:%M"),
                             "--hours", "2", "--json", env=env).stdout)[0]
    assert [i["name"] for i in booked["equipment"]] == [f"s1-{unique}"]  # s2 is hidden

    table = _cli("reservations", env=env).stdout
    assert booked["id"] in table and re.search(r"\b(39|40)d \d+h\b", table)  # the time left
    taken = _cli("reserve", "--kind", kind, "--start", start.isoformat(), "--hours", "1", env=env, check=False)
    assert taken.returncode == 1 and "Not available (409)" in taken.stderr and "free:" in taken.stderr

    free = json.loads(_cli("availability", "--kind", kind, "--count", "1", "--hours", "1",
                           "--after", start.isoformat(), "--limit", "1", "--json", env=env).stdout)
    assert free["slots"][0]["starts_at"] == booked["ends_at"]
    extended = json.loads(_cli("reservations", "extend", booked["id"], "--hours", "1", "--json", env=env).stdout)[0]
    assert extended["ends_at"] > booked["ends_at"]
    cancelled = json.loads(_cli("reservations", "cancel", booked["id"], "--reason", "plans changed", "--json",
                                env=env).stdout)[0]
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "plans changed")
    assert booked["id"] not in _cli("reservations", env=env).stdout
    assert "plans changed" in _cli("reservations", "--all", env=env).stdout
