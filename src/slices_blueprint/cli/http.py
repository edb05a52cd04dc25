"""The CLI's HTTP plumbing: service URL and tokens from flags, environment or a config
file, and problem-details errors shown as one clear line."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer

from slices_blueprint.cli.errors import fail
from slices_blueprint.cli.tokens import renewal_hint

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


def request_json(method: str, url: str, token: str | None, *, flags: dict[str, str] | None = None,
                 **kwargs: Any) -> Any:
    """Call the service: its JSON answer (text for a text answer); on an error print its
    problem detail and exit 1. ``flags`` names
    the command's flag for each API field (``expires_at`` -> ``--duration``) in the message;
    an expired token's message says how to get a new one."""
    import httpx  # ~50 ms: only for commands that call the service

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {url}: {exc} (is the service running? set --url or SLICES_BLUEPRINT_URL)") from None
    if response.status_code >= 400:
        raise fail(problem_message(response, token, flags or {}))
    if response.status_code == 204 or not response.content:
        return None
    if response.headers.get("content-type", "").startswith("text/"):
        return response.text  # a log
    return response.json()


def problem_message(response: Any, token: str | None, flags: dict[str, str]) -> str:
    """One line for an error answer: its problem's title and detail, API fields named by
    the flags the user typed."""
    try:
        problem = response.json()
        detail = str(problem.get("detail", ""))
        message = f"{problem.get('title', 'error')} ({response.status_code}): {detail}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    for field, flag in flags.items():
        message = re.sub(rf"(?<![\w-])(resources\.\d+\.)?{re.escape(field)}\b", flag, message)
    if response.status_code == 401 and "expired" in detail:
        message += f"; {renewal_hint(token)}"
    return message
