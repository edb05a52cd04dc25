"""The CLI's HTTP plumbing: service URL and tokens from flags, environment or a config
file, and problem-details errors shown as one clear line."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

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


@dataclass(frozen=True)
class Answer:
    """A service's answer: status, media type, body."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def call(method: str, url: str, token: str | None = None, *, params: dict[str, Any] | None = None,
         body: Any = None, timeout: float = 30.0) -> Answer:
    """One HTTP request (the standard library's client: the CLI starts faster without
    httpx/httpcore); an error status is an answer too. Raises ``OSError`` when the service
    cannot be reached, ``ValueError`` for a URL that is not http(s)."""
    import urllib.error  # here, not at start-up: ``--help`` needs no HTTP client (~20 ms)
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http:// or https:// URL: {url}")
    if params:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items() if v is not None}
        url = f"{url}?{urlencode(query, doseq=True)}"  # a list: the key repeated
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers.get_content_type(), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers.get_content_type(), error.read())


def request_json(method: str, url: str, token: str | None, *, flags: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None, json: Any = None) -> Any:
    """Call the service: its JSON answer (text for a text answer); on an error print its
    problem detail and exit 1. ``flags`` names the command's flag for each API field
    (``expires_at`` -> ``--duration``) in the message; an expired token's message says how
    to get a new one."""
    try:
        answer = call(method, url, token, params=params, body=json)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise fail(f"cannot reach {url}: {reason} (is the service running? set --url or SLICES_BLUEPRINT_URL)") from None
    if answer.status >= 400:
        raise fail(problem_message(answer, token, flags or {}))
    if answer.status == 204 or not answer.body:
        return None
    if answer.content_type.startswith("text/"):
        return answer.text  # a log
    return answer.json()


def problem_message(answer: Answer, token: str | None, flags: dict[str, str]) -> str:
    """One line for an error answer: its problem's title and detail, API fields named by
    the flags the user typed."""
    try:
        problem = answer.json()
        detail = str(problem.get("detail", ""))
        message = f"{problem.get('title', 'error')} ({answer.status}): {detail}"
    except (ValueError, AttributeError):
        return f"HTTP {answer.status}: {answer.text[:200]}"
    for field, flag in flags.items():
        message = re.sub(rf"(?<![\w-])(resources\.\d+\.)?{re.escape(field)}\b", flag, message)
    if answer.status == 401 and "expired" in detail:
        message += f"; {renewal_hint(token)}"
    return message
