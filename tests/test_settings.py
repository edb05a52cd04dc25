"""Settings rules that keep dev mode and the test double out of production."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from slices_blueprint.core.config import Settings


def test_test_double_provider_needs_dev_mode(tmp_path) -> None:
    with pytest.raises(ValidationError, match="test-double"):
        Settings(data_dir=tmp_path, database_url="postgresql://db/x", providers=["vm", "test-double"])


def test_toml_file_and_environment(tmp_path, monkeypatch) -> None:
    config = tmp_path / "site.toml"
    config.write_text('site_id = "be-gent1-bi-vm1"\nadmin_user_ids = ["user_a"]\n')
    monkeypatch.setenv("SLICES_BLUEPRINT_CONFIG", str(config))
    monkeypatch.setenv("SLICES_BLUEPRINT_PORT", "9001")
    settings = Settings(data_dir=tmp_path)
    assert (settings.site_id, settings.admin_user_ids, settings.port) == ("be-gent1-bi-vm1", ["user_a"], 9001)
    assert settings.service_url == "http://127.0.0.1:9001"


def test_bad_settings_end_the_cli_with_a_short_message(tmp_path) -> None:
    """No traceback, one line per setting, and a refused secret is never echoed."""
    env = {**os.environ, "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path),
           "SLICES_BLUEPRINT_OIDC_CLIENT_SECRET": "s3cret-value",
           "SLICES_BLUEPRINT_WEB_SESSION_HOURS": "many"}
    cli = [sys.executable, "-m", "slices_blueprint", "db", "current"]
    bad_type = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad_type.returncode == 2 and "Traceback" not in bad_type.stderr
    assert "web_session_hours: Input should be a valid integer" in bad_type.stderr
    env["SLICES_BLUEPRINT_WEB_SESSION_HOURS"] = "12"
    env["SLICES_BLUEPRINT_ADMIN_USER_IDS"] = "[not json"
    bad_json = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad_json.returncode == 2 and "admin_user_ids" in bad_json.stderr
    assert "JSON in environment variables" in bad_json.stderr
    assert "s3cret-value" not in bad_type.stderr + bad_json.stderr
