"""Settings rules that keep dev mode and the test double out of production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from slices_blueprint.core.config import Settings


def test_dev_mode_is_automatic_only_for_embedded_loopback(tmp_path) -> None:
    assert Settings(data_dir=tmp_path).effective_dev_mode is True
    assert Settings(data_dir=tmp_path, database_url="postgresql://db/x").effective_dev_mode is False
    assert Settings(data_dir=tmp_path, host="0.0.0.0").effective_dev_mode is False


def test_dev_mode_refused_on_a_public_listener(tmp_path) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Settings(data_dir=tmp_path, host="0.0.0.0", dev_mode=True)


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
