"""Security headers on every response: a Content-Security-Policy without inline script, no
framing, no MIME sniffing, no referrer leaking resource ids to other sites."""

from __future__ import annotations

CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",  # no inline script, no eval: pages load only our own files
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)
CONTENT_SECURITY_POLICY = "; ".join(CSP_DIRECTIVES)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
"""Added to every response by ``core.middleware.RequestContextMiddleware`` (a response's own
value of one of them wins)."""
