"""The console's static files (chalicelib/api/console.py), without a browser: served by the app with their types
and no key, nothing outside chalicelib/console/, the API behind the key as before; in the deployment package."""
from __future__ import annotations

import re
import zipfile

import pytest

from chalicelib.api.console import ASSET_DIR, asset_names
from tests.support.aws_api import api_environment

KEY = "console-route-test-key"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as chalice_client:
        monkeypatch.setenv("DATA_PIPELINE_API_KEY", KEY)
        yield chalice_client


def test_the_console_is_served_without_a_key_as_utf8_html(client):
    reply = client.http.get("/console")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    text = reply.body.decode("utf-8")
    assert '<meta charset="utf-8">' in text and "控制台" in text
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    # The API itself still needs the key.
    refused = client.http.get("/api/v0/data_pipeline/tasks")
    assert refused.status_code == 401
    allowed = client.http.get("/api/v0/data_pipeline/tasks", headers={"Authorization": f"Bearer {KEY}"})
    assert allowed.status_code == 200


def test_every_module_the_page_loads_is_served_with_its_type(client):
    index = (ASSET_DIR / "index.html").read_text(encoding="utf-8")
    wanted = set(re.findall(r'(?:src|href)="console/([^"]+)"', index))
    for module in ASSET_DIR.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([^"]+)"', module.read_text(encoding="utf-8")))
    assert {"main.js", "console.css", "i18n.js", "api.js"} <= wanted
    assert wanted <= asset_names(), sorted(wanted - asset_names())
    for name in sorted(wanted):
        reply = client.http.get(f"/console/{name}")
        assert reply.status_code == 200, name
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        assert reply.headers["Content-Type"] == f"{kind}; charset=utf-8", name


@pytest.mark.parametrize("name", ["nothing.js", "..%2Fapp.py", "%2E%2E%2Fconsole.py", "index.py", "README.md",
                                  ".hidden.js"])
def test_nothing_else_is_served(client, name):
    reply = client.http.get(f"/console/{name}")
    assert reply.status_code == 404, name
    body = reply.json_body
    assert body["success"] is False and body["error"]["code"] == "NOT_FOUND"


def test_no_console_file_uses_markup_from_data_or_the_network():
    """Text goes into the page through textContent; the one innerHTML is the Markdown renderer's escaped output."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in ASSET_DIR.iterdir() if p.is_file()}
    assert sum(len(re.findall(r"\.innerHTML\s*=", s)) for s in sources.values()) == 1
    assert "node.innerHTML = renderMarkdown(source)" in sources["highlight.js"]
    for name, text in sources.items():
        assert not re.search(r"https?://", text), name  # nothing fetched from the internet
        assert "localStorage" not in text, name
    assert sum(p.stat().st_size for p in ASSET_DIR.iterdir()) < 120_000  # small: no framework


def test_the_console_files_ship_in_the_lambda_package(tmp_path):
    """check-zip (infra/template.py) refuses a package without them, as it does for the other data files."""
    from infra.template import check_deployment_zip

    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("app.py", "")
    problems = check_deployment_zip(bare)
    assert any("chalicelib/console/index.html" in p and "chalicelib/console/main.js" in p for p in problems)
