"""Schemathesis against the BI OpenAPI document, as an experiment, a user and an admin.

Every operation is fuzzed (coverage, fuzzing and stateful phases) over real HTTP against a
service of its own (a fresh database, dev mode, the test-double provider), bounded in time
(``SLICES_BLUEPRINT_FUZZ_SECONDS`` per token, default 45). Passing means: no server error,
and every answer is documented (status, problem+json content type, schema, Allow headers),
valid input is accepted and invalid input refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slices_blueprint.core.dev_issuer import mint_dev_token
from tests.conftest import LiveServer, service_of_its_own

SECONDS = int(os.environ.get("SLICES_BLUEPRINT_FUZZ_SECONDS", "45"))
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the few checks turned off, and why
SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))


@pytest.fixture(scope="module")
def fuzz_site(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A service of its own: what the fuzzer creates, hides and deletes stays there."""
    with service_of_its_own(pg_admin_url, tmp_path_factory.mktemp("fuzz"), providers=["test-double"],
                            log_level="ERROR") as server:
        yield server


@pytest.mark.parametrize("who", ["experiment", "user", "admin"])
def test_the_api_survives_fuzzing_and_matches_its_document(fuzz_site: LiveServer, who: str, tmp_path: Path) -> None:
    if not Path(SCHEMATHESIS).exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    token = {
        "experiment": lambda: mint_dev_token(fuzz_site.settings, user="fuzzer", project="fuzz", experiment="fuzz"),
        "user": lambda: mint_dev_token(fuzz_site.settings, user="fuzzer", project="fuzz"),
        "admin": lambda: mint_dev_token(fuzz_site.settings, user="admin", project="fuzz", experiment="fuzz-admin"),
    }[who]()
    run = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{fuzz_site.bi}/openapi.json", "--header", f"Authorization: Bearer {token}",
         "--max-time", str(SECONDS), "--generation-allow-x00", "false",
         "--request-timeout", "30", "--warnings", "off", "--no-color"],
        capture_output=True, text=True, timeout=SECONDS * 4 + 120, check=False, cwd=tmp_path,
    )
    summary = run.stdout[-6000:]
    print(summary)
    assert run.returncode == 0, summary
    assert "Internal error" not in run.stdout
