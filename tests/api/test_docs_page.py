"""Browsable API docs: ``/docs`` (Swagger UI, offline) renders every endpoint in a real headless Chromium.

Over HTTP: ``/`` redirects to ``docs``, the page and its assets are served from the installed
swagger-ui-bundle with no URL off the server (no CDN, no online validator), unknown files are 404, and
with a bearer token configured the page is open while the spec stays closed. In Chromium (Debian's
package; the browser tests skip, saying so, when it is not installed): the rendered DOM lists the
seven resource paths of docs/api.md; with a token configured, the page asks for it, refuses a wrong
one, and with the right one renders the API and sends it on every call made from the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from tidemq.api.docs import ASSETS

from tests.api.browser import chromium_path, dump_dom, open_page
from tests.api.conftest import ApiServer

pytestmark = pytest.mark.redis

# the seven resource endpoints of docs/api.md (besides the operations ones)
SEVEN = ("/pub", "/retain", "/session", "/sessions", "/kill", "/sub", "/unsub")
TOKEN = "docs-token-0123456789abcdef"

needs_chromium = pytest.mark.skipif(chromium_path() is None,
                                    reason="chromium is not installed (scripts/test.sh installs Debian's package)")


def rendered_paths(dom: str) -> set[str]:
    """The paths Swagger UI rendered as operations (``<span class="opblock-summary-path" data-path=...>``)."""
    return set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom)) | set(
        re.findall(r'data-path="([^"]+)"[^>]*class="opblock-summary-path"', dom))


def test_seven_endpoints_are_the_ones_in_api_md() -> None:
    from pathlib import Path

    index = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    table = index[index.index("| endpoint | what it does |"):index.index("## Messages")]
    listed = set(re.findall(r"(?:GET|POST|PUT|DELETE) (/[a-z]+)", table))
    assert listed - {"/healthz", "/readyz", "/metrics", "/openapi.json"} == set(SEVEN)


def test_root_redirects_and_the_page_is_offline(api: ApiServer) -> None:
    assert api.http is not None
    r = api.http.get("/")
    assert r.status_code == 302 and r.headers["location"] == "docs"
    r = api.http.get("/docs/")
    assert r.status_code == 302 and r.headers["location"] == "../docs"
    page = api.http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page.text), "the page loads something off the server"
    assert "validatorUrl: null" in page.text
    for name, content_type in ASSETS.items():
        asset = api.http.get(f"/docs/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == content_type and asset.content
        assert f'"docs/{name}"' in page.text
    missing = api.http.get("/docs/swagger-ui-bundle.js.map")
    assert missing.status_code == 404 and "\n" not in missing.text.strip()
    assert api.http.get("/docs/..%2fpyproject.toml").status_code == 404


def test_with_a_token_the_page_is_open_and_the_spec_is_not(api_factory: Callable[..., ApiServer]) -> None:
    api = api_factory(api_token=TOKEN)
    assert api.http is not None
    assert api.http.get("/").status_code == 302
    assert api.http.get("/docs").status_code == 200
    assert api.http.get("/docs/swagger-ui.css").status_code == 200
    assert api.http.get("/openapi.json").status_code == 401
    assert api.http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@needs_chromium
def test_chromium_renders_every_endpoint(api: ApiServer) -> None:
    dom = dump_dom(f"{api.url}/")  # through the redirect
    paths = rendered_paths(dom)
    missing = set(SEVEN) - paths
    assert not missing, f"not rendered: {sorted(missing)}; rendered: {sorted(paths)}"
    assert "TideMQ admin API" in dom


@needs_chromium
async def test_chromium_asks_for_the_token_and_uses_it(api_factory: Callable[..., ApiServer]) -> None:
    api = api_factory(api_token=TOKEN)
    async with open_page() as page:
        await page.goto(f"{api.url}/docs")
        assert await page.wait_for("!document.getElementById('token').hidden")
        assert await page.evaluate("document.querySelectorAll('.opblock-summary-path').length") == 0

        async def submit(token: str) -> None:
            await page.evaluate(f"document.getElementById('token-input').value = {token!r}; "
                                "document.getElementById('token-form').requestSubmit(); true")

        await submit("wrong")
        assert await page.wait_for("!document.getElementById('token-error').hidden")
        await submit(TOKEN)
        paths: Any = await page.wait_for(
            "document.querySelectorAll('.opblock-summary-path').length >= 7 && "
            "Array.from(document.querySelectorAll('.opblock-summary-path'), e => e.dataset.path)")
        assert set(SEVEN) <= set(paths)
        # every call made from the page ("Try it out") carries the token
        header = await page.evaluate("window.ui.getConfigs().requestInterceptor({headers: {}}).headers.Authorization")
        assert header == f"Bearer {TOKEN}"
