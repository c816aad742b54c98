"""What API Gateway answers before the API Lambda runs, reproduced for Chalice's local dev server.

Chalice's local handler answers a method it has no `do_` for (TRACE, CONNECT, …) with http.server's HTML 501,
and an unknown path with API Gateway's `{"message": "Missing Authentication Token"}` 403. The deployed API's
gateway responses (infra/template.py `gateway_responses`) turn those into envelopes; here the same answers are
produced locally: an unknown path is a 404 `NOT_FOUND` envelope, a method the route lacks a 405
`METHOD_NOT_ALLOWED` envelope (error.type `MethodNotAllowed`) with the route's methods in `Allow`.

API Gateway's quotas hold here too (infra/local/quotas.py): a body above 10 MB is its 413 `PAYLOAD_TOO_LARGE`
answer and an integration that takes longer than 29 s its 504 `INTEGRATION_TIMEOUT` answer, both in the
envelope the deployed gateway responses give (infra/api_gateway.py).
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from chalice.local import ChaliceRequestHandler, LocalGateway, RouteMatcher

from infra.api_gateway import GATEWAY_RESPONSES
from infra.local.quotas import limit

logger = logging.getLogger(__name__)

METHOD_NOT_ALLOWED = {"error_type": "MethodNotAllowed", "code": "METHOD_NOT_ALLOWED"}
NOT_FOUND = {"error_type": "NotFound", "code": "NOT_FOUND"}


def _envelope(status: int, message: str, kind: dict[str, str], headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    from chalicelib.api.envelope import failure

    response = failure(status, message, **kind).to_dict()
    response["headers"].update(headers or {})
    return response


class EnvelopeGateway(LocalGateway):
    """LocalGateway that answers unknown paths (404) and methods a route lacks (405) in the envelope."""

    def handle_request(self, method: str, path: str, headers: Any, body: bytes | None) -> Any:
        routes = self._app_object.routes
        try:
            resource = RouteMatcher(list(routes)).match_route(path).route
        except ValueError:
            return _envelope(404, f"Not found: no route for {method} {urlsplit(path).path}", NOT_FOUND)
        views = routes[resource]
        has_cors = any(view.cors is not None for view in views.values())
        if method not in views and not (method == "OPTIONS" and has_cors):  # CORS preflight: Chalice answers
            allowed = ", ".join(sorted(views))
            return _envelope(405, f"Method {method} is not allowed on {resource} (allowed: {allowed})",
                             METHOD_NOT_ALLOWED, {"Allow": allowed})
        payload_limit = limit("api_payload")
        if payload_limit is not None and body is not None and len(body) > payload_limit:
            return _gateway_response("REQUEST_TOO_LARGE",
                                     f"Request body too large: {len(body)} bytes (limit {payload_limit})")
        timeout = limit("api_timeout")
        if timeout is None:
            return super().handle_request(method, path, headers, body)
        return self._handle_within(timeout, method, path, headers, body)

    def _handle_within(self, timeout: int, method: str, path: str, headers: Any, body: bytes | None) -> Any:
        """The app's answer, or API Gateway's 504 once `timeout` seconds passed (the handler runs on to its end,
        as a Lambda behind API Gateway does)."""
        answer: list[Any] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                answer.append(LocalGateway.handle_request(self, method, path, headers, body))
            except BaseException as exc:  # handed to the request's thread, which raises it as Chalice would
                failure.append(exc)

        thread = threading.Thread(target=run, name="api-integration", daemon=True)
        thread.start()
        thread.join(timeout)
        if failure:
            raise failure[0]
        if answer:
            return answer[0]
        logger.warning("api integration timeout", extra={"method": method, "path": urlsplit(path).path,
                                                         "seconds": timeout})
        return _gateway_response("INTEGRATION_TIMEOUT", f"Endpoint request timed out after {timeout} s")


def _gateway_response(response_type: str, details: str) -> dict[str, Any]:
    """The envelope the deployed API's gateway response of `response_type` answers (infra/api_gateway.py)."""
    status, error_type, code, message = GATEWAY_RESPONSES[response_type]
    from chalicelib.api.envelope import failure

    return failure(status or 500, message, error_type=error_type, code=code, details=details).to_dict()


class EnvelopeRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler with `EnvelopeGateway`, for every method a client may send."""

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        self.local_gateway = EnvelopeGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # http.server looks up `do_<METHOD>` and answers 501 in HTML when it is missing: TRACE, CONNECT,
        # PROPFIND, … all go through the gateway instead (which answers 405 for them).
        if name.startswith("do_") and len(name) > 3:
            return self._generic_handle
        raise AttributeError(name)

    def _send_http_response_with_body(self, code: int, headers: Any, body: str | bytes) -> None:
        if self.command != "HEAD":
            super()._send_http_response_with_body(code, headers, body)
            return
        # A HEAD answer has the headers of the full answer and no body (the client would read it as the
        # start of the next response on this connection).
        self.send_response(code)
        self.send_header("Content-Length", str(len(body.encode("utf-8") if isinstance(body, str) else body)))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)
