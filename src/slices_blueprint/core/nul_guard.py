"""Text with NUL characters is refused at the door (422), wherever it hides.

PostgreSQL cannot store NUL in text, so a NUL that reached a query used to end in a 500.
This middleware refuses it in the path, the query string, url-encoded forms and JSON bodies
(the ``\\u0000`` escape, not an escaped backslash followed by ``u0000``) before any route
runs. JSON and form bodies are read whole here; the body-size cap in front of it bounds
them."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slices_blueprint.core.errors import problem

JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
URL_NUL = re.compile(rb"%00")
SCANNED_BODIES = {b"application/json": JSON_NUL, b"application/x-www-form-urlencoded": URL_NUL}


def _refuse(where: str) -> JSONResponse:
    return problem(422, "Invalid input", f"{where}: NUL characters (\\u0000, %00) are not accepted in text")


class RefuseNul:
    """Answers 422 to a request carrying a NUL character in its URL or its text body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _refuse("path")(scope, receive, send)
            return
        if b"\x00" in scope["query_string"] or URL_NUL.search(scope["query_string"]):
            await _refuse("query")(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        pattern = SCANNED_BODIES.get(content_type)
        if pattern is None:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if b"\x00" in body or pattern.search(body):
            await _refuse("body")(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
