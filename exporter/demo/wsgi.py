"""WSGI plumbing the simulated AWS's layers share: calling the next layer with a body of their own."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def forward(app: WsgiApp, environ: dict[str, Any], body: dict[str, Any], account: str = "") -> tuple[str, Any, bytes]:
    """Call `app` with `environ` and a new JSON body (as `account`, when given); its status, headers and body."""
    raw = json.dumps(body).encode()
    forwarded = {**environ, "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))}
    if account:
        forwarded["HTTP_X_MOTO_ACCOUNT_ID"] = account
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda _chunk: None

    chunks = b"".join(app(forwarded, capture))
    return str(captured.get("status", "500")), captured.get("headers", []), chunks
