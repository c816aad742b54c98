"""The web console: static pages (chalicelib/console/) served by the app itself at /console.

The files are public (no key: a browser cannot send one on navigation, and they hold no data); every API call
the console makes carries the Bearer key the user pastes into it. Only files of chalicelib/console/ with a known
type are served, read once per process; anything else is a 404 envelope.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from chalice import Blueprint, Response

from chalicelib.api.envelope import failure

console_bp = Blueprint(__name__)

ASSET_DIR = Path(__file__).resolve().parent.parent / "console"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The routes that need no key, here and on API Gateway (infra/template.py leaves them out of the authorizer).
PUBLIC_ROUTES = ("/console", "/console/{asset}")
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:html|js|css)$")
# Scripts, styles and API calls from this origin only; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public_route(resource_path: str | None) -> bool:
    """True for the console's own routes (Chalice's resource path, e.g. `/console/{asset}`)."""
    return resource_path in PUBLIC_ROUTES


@functools.cache
def asset_names() -> frozenset[str]:
    return frozenset(p.name for p in ASSET_DIR.iterdir() if p.is_file() and _ASSET_NAME.match(p.name))


@functools.cache
def _read(name: str) -> str:
    return (ASSET_DIR / name).read_text(encoding="utf-8")


def get_asset_response(name: str) -> Response:
    """The file `name` of chalicelib/console/ with its type, or a 404 envelope."""
    if name not in asset_names():
        return failure(404, f"Not found: no console file {name!r}", error_type="NotFound", code="NOT_FOUND")
    headers = {"Content-Type": CONTENT_TYPES[Path(name).suffix], **SECURITY_HEADERS}
    return Response(body=_read(name), status_code=200, headers=headers)


@console_bp.route("/console", methods=["GET"])
def console_index() -> Response:
    return get_asset_response(INDEX)


@console_bp.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    return get_asset_response(asset)
