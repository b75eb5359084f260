"""Browsable API docs: Swagger UI at ``/docs`` over ``/openapi.json``, served offline; ``/`` redirects there.

The UI's assets come from the ``swagger-ui-bundle`` package (read once, kept in
memory), so the page works without Internet access: nothing is loaded from a
CDN and the online spec validator is off. Every URL in the page is relative
(``docs/...``, ``openapi.json``), so it also works behind a reverse proxy that
mounts the API under a path prefix. Invariants: only the files named in
``ASSETS`` are served (no directory listing, no path from the request reaches
the file system); ``/docs`` and its assets need no bearer token (they are
public software, not data), while the spec and every call made from the page
keep needing one: when ``/openapi.json`` answers 401 the page asks for a token,
keeps it in the tab's ``sessionStorage`` and sends it as ``Authorization:
Bearer`` with the spec request and with every "Try it out" call.
"""

from __future__ import annotations

import functools

from sanic import Blueprint, HTTPResponse, Request, html, raw, redirect
from swagger_ui_bundle import swagger_ui_path

from .errors import ApiError

bp = Blueprint("docs")

# file name -> content type; the only files served under /docs/
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
OPEN_PATHS = frozenset({"/", "/docs", "/docs/", *(f"/docs/{name}" for name in ASSETS)})

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>TideMQ admin API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
  <style>
    body { margin: 0; background: #fafafa; font-family: sans-serif; }
    #token { margin: 2em auto; max-width: 40em; }
    #token input { width: 24em; }
  </style>
</head>
<body>
  <div id="token" hidden>
    <form id="token-form">
      <p>This admin API needs a bearer token (<code>TIDEMQ_API_TOKEN</code>). It stays in this tab only.</p>
      <input id="token-input" type="password" autocomplete="off" aria-label="bearer token">
      <button type="submit">Show the API</button>
      <p id="token-error" hidden>That token was refused.</p>
    </form>
  </div>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
  (function () {
    "use strict";
    var KEY = "tidemq-api-token";
    function token() { return window.sessionStorage.getItem(KEY); }
    function authorize(req) {
      var t = token();
      if (t) { req.headers["Authorization"] = "Bearer " + t; }
      return req;
    }
    function start() {
      document.getElementById("token").hidden = true;
      window.ui = SwaggerUIBundle({
        url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
        requestInterceptor: authorize, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
      });
    }
    function load() {
      fetch("openapi.json", authorize({headers: {}})).then(function (r) {
        if (r.status === 401) {
          document.getElementById("token-error").hidden = !token();
          document.getElementById("token").hidden = false;
        } else {
          start();
        }
      }, start);
    }
    document.getElementById("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      window.sessionStorage.setItem(KEY, document.getElementById("token-input").value.trim());
      load();
    });
    load();
  })();
  </script>
</body>
</html>
"""


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one of ``ASSETS`` from the installed swagger-ui-bundle."""
    data: bytes = (swagger_ui_path / name).read_bytes()
    return data


@bp.get("/", name="root")
async def root(request: Request) -> HTTPResponse:
    return redirect("docs")  # relative: right behind a path prefix too


@bp.get("/docs", name="docs", strict_slashes=True)
async def page(request: Request) -> HTTPResponse:
    return html(PAGE, headers={"Cache-Control": "no-cache"})


@bp.get("/docs/", name="docs_slash", strict_slashes=True)
async def page_slash(request: Request) -> HTTPResponse:
    return redirect("../docs")  # the page's relative URLs are written for /docs


@bp.get("/docs/<name:str>", name="docs_asset")
async def docs_asset(request: Request, name: str) -> HTTPResponse:
    content_type = ASSETS.get(name)
    if content_type is None:
        raise ApiError(404, f"no such file: {request.path}")
    return raw(asset(name), content_type=content_type, headers={"Cache-Control": "public, max-age=3600"})
