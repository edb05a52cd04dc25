"""The CLI's HTTP plumbing: service URL and tokens from flags, environment or a config
file, and problem-details errors shown as one clear line."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import httpx
import platformdirs
import typer

from slices_blueprint.cli.errors import fail

CONFIG_FILE = Path(platformdirs.user_config_dir("slices-blueprint", appauthor=False)) / "client.toml"


def _from_config(key: str) -> str | None:
    path = Path(os.environ.get("SLICES_BLUEPRINT_CLIENT_CONFIG", CONFIG_FILE))
    if not path.is_file():
        return None
    try:
        value = tomllib.loads(path.read_text()).get(key)
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise fail(f"client config {path}: {exc}; fix it, or point SLICES_BLUEPRINT_CLIENT_CONFIG "
                   "at another file") from None
    return str(value) if value else None


def _url_default() -> str:
    return _from_config("url") or "http://127.0.0.1:8000"


ServiceUrl = Annotated[
    str,
    typer.Option("--url", envvar="SLICES_BLUEPRINT_URL", default_factory=_url_default, show_default="http://127.0.0.1:8000",
                 help="Service URL (or 'url' in the client config file)."),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="SLICES_BLUEPRINT_TOKEN",
                 help="Experiment JWT (writes) or user id-token (reads); or 'token' in the client config file."),
]
UserToken = Annotated[
    str | None,
    typer.Option("--user-token", envvar="SLICES_BLUEPRINT_USER_TOKEN",
                 help="Your user id-token, sent along when creating resources (adds your SSH key)."),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def resolve_token(token: str | None, key: str = "token") -> str:
    value = token or _from_config(key)
    if not value:
        flag = f"--{key.replace('_', '-')}"
        raise fail(f"{flag} missing: pass {flag}, set SLICES_BLUEPRINT_{key.upper()}, or put {key} in the "
                   f"client config ({CONFIG_FILE})")
    return value


def request_json(method: str, url: str, token: str | None, **kwargs: Any) -> Any:
    """Call the service; on an error print its problem detail and exit 1."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {url}: {exc} (is the service running? set --url or SLICES_BLUEPRINT_URL)") from None
    if response.status_code >= 400:
        try:
            problem = response.json()
            message = f"{problem.get('title', 'error')} ({response.status_code}): {problem.get('detail', '')}"
        except ValueError:
            message = f"HTTP {response.status_code}: {response.text[:200]}"
        raise fail(message)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
