"""Every error code an answer can carry in `error.code`, with its HTTP status and what it means: the error catalogue
(`chalicelib/data/errors.json`, which chalicelib/errors.py builds its classes from) read once more. The OpenAPI
document and the README name them per operation from here."""
from chalicelib.errors import CATALOGUE, meaning


def _codes() -> dict[str, tuple[int, str]]:
    """code → (status, meaning). A code that several classes answer with different statuses (a malformed
    connection string is 400, an unreachable database 500) gets the lowest status and each case spelled out."""
    cases: dict[str, list[tuple[int, str]]] = {}
    resolved: dict[str, tuple[str, int]] = {}
    for entry in CATALOGUE["classes"]:
        parent = resolved.get(entry.get("parent", ""), ("", 0))
        code, status = entry.get("code", parent[0]), entry.get("status", parent[1])
        resolved[entry["class"]] = (code, status)
        cases.setdefault(code, []).append((status, meaning(entry)))
    for entry in CATALOGUE["answers"]:
        cases.setdefault(entry["code"], []).append((entry["status"], meaning(entry)))
    out = {}
    for code, found in cases.items():
        text = found[0][1] if len(found) == 1 else ", ".join(f"{s} when {m}" for s, m in sorted(found))
        out[code] = (min(s for s, _ in found), text)
    return out


ERROR_CODES: dict[str, tuple[int, str]] = _codes()
# Every operation can answer these (validation, the API key, an unknown method, the size limit, a bug).
ALWAYS = {400: ["VALIDATION_ERROR"], 401: ["UNAUTHORIZED"], 405: ["METHOD_NOT_ALLOWED"],
          413: ["PAYLOAD_TOO_LARGE"], 500: ["INTERNAL_ERROR"]}
STATUS_TEXT = {400: "Invalid request", 401: "Missing or wrong API key", 403: "Forbidden",
               404: "Not found", 405: "Method not allowed",
               409: "Conflict", 413: "Request too large", 415: "Unsupported media type",
               422: "Unprocessable content", 500: "Server error"}
