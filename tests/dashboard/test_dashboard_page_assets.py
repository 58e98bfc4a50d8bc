"""Streamlit's build files answered from memory (``dashboard.page_assets``), in front of the
server ``unmask dashboard`` starts; everything else still answered by Streamlit."""
import asyncio
import urllib.request
from pathlib import Path

import pytest

from dashboard.page_assets import IMMUTABLE, PageAssets
from dashboard_browser import running_dashboard

FILES = {"static/js/index.A1.js": b"export const a = 1;\n",
         "static/css/index.B2.css": b"body { margin: 0 }\n",
         "static/media/font.C3.woff2": b"\x00\x01binary"}


def static_dir(tmp_path: Path) -> Path:
    """A Streamlit static folder in miniature: index.html and content-hashed build files."""
    root = tmp_path / "static"
    for name, body in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    (root / "index.html").write_text("<html><head></head><body></body></html>")
    return root


class Streamlit:
    """Stands in for Streamlit's server behind the middleware: records what it is asked and
    answers 404."""

    def __init__(self):
        self.asked = []

    async def __call__(self, scope, receive, send):
        self.asked.append((scope["type"], scope.get("method"), scope["path"]))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(app, method: str, path: str, kind: str = "http") -> tuple[int, dict, bytes]:
    """One request through an ASGI app: (status, headers, body)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": kind, "method": method, "path": path, "root_path": "",
             "query_string": b"", "headers": []}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_build_files_are_answered_from_memory_with_streamlits_cache_headers(tmp_path):
    root = static_dir(tmp_path)
    streamlit = Streamlit()
    app = PageAssets(streamlit, root, base_path="/review/")
    for name, body in FILES.items():
        status, headers, sent = call(app, "GET", f"/review/{name}")
        assert (status, sent, int(headers[b"content-length"])) == (200, body, len(body))
        assert headers[b"cache-control"] == IMMUTABLE
    assert call(app, "GET", "/review/static/js/index.A1.js")[1][b"content-type"] in (
        b"text/javascript; charset=utf-8", b"application/javascript; charset=utf-8")
    assert call(app, "GET", "/review/static/css/index.B2.css")[1][b"content-type"] == \
        b"text/css; charset=utf-8"
    status, headers, sent = call(app, "HEAD", "/review/static/js/index.A1.js")
    assert (status, sent, int(headers[b"content-length"])) == (200, b"", len(FILES["static/js/index.A1.js"]))
    # read once: a file changed on disk afterwards is still served as first read (the names
    # are content hashes, so a new build is a new name)
    (root / "static/js/index.A1.js").write_bytes(b"changed")
    assert call(app, "GET", "/review/static/js/index.A1.js")[2] == FILES["static/js/index.A1.js"]
    assert streamlit.asked == []                       # Streamlit's file handler never asked


def test_everything_else_is_streamlits_to_answer(tmp_path):
    root = static_dir(tmp_path)
    streamlit = Streamlit()
    app = PageAssets(streamlit, root, base_path="/review")
    asked = [("GET", "/review/static/js/missing.js"),       # not a build file
             ("GET", "/static/js/index.A1.js"),             # outside the base path
             ("GET", "/review/static/../index.html"),       # never resolved: no such key
             ("GET", "/review/index.html"),                 # the page itself, not a build file
             ("GET", "/review/finance"),
             ("POST", "/review/static/js/index.A1.js")]
    for method, path in asked:
        assert call(app, method, path)[0] == 404
    call(app, "GET", "/review/_stcore/stream", kind="websocket")
    # a build file gone since start-up (Streamlit upgraded under a running server): Streamlit
    # answers for it rather than the middleware failing
    (root / "static/css/index.B2.css").unlink()
    assert call(app, "GET", "/review/static/css/index.B2.css")[0] == 404
    assert streamlit.asked == [("http", m, p) for m, p in asked] + [
        ("websocket", "GET", "/review/_stcore/stream"), ("http", "GET", "/review/static/css/index.B2.css")]



def test_files_whose_names_do_not_change_with_their_content_are_streamlits(tmp_path):
    """Streamlit sends index.html and manifest.json with ``no-cache``: answering them here,
    read once and marked immutable, could serve a browser a stale page for a year."""
    root = static_dir(tmp_path)
    for name in ("static/manifest.json", "static/js/page.html"):
        (root / name).write_text("{}")
    streamlit = Streamlit()
    app = PageAssets(streamlit, root)
    assert call(app, "GET", "/static/manifest.json")[0] == 404
    assert call(app, "GET", "/static/js/page.html")[0] == 404
    assert call(app, "GET", "/static/js/index.A1.js")[0] == 200
    assert streamlit.asked == [("http", "GET", "/static/manifest.json"),
                               ("http", "GET", "/static/js/page.html")]

@pytest.mark.browser
def test_the_dashboard_server_answers_streamlits_scripts_from_memory(workspace, tmp_path):
    """Through ``unmask dashboard`` and the installed Streamlit: the page's own scripts come
    back byte for byte, from the middleware (Streamlit's file handler would add a file tag
    and date), and the page and the health check are still Streamlit's."""
    import streamlit

    static = Path(streamlit.__file__).parent / "static"
    scripts = sorted((static / "static" / "js").glob("index.*.js"))
    assert scripts, "the installed Streamlit has no index script"
    with running_dashboard(workspace, tmp_path) as url:
        for script in scripts:
            with urllib.request.urlopen(f"{url}/{script.relative_to(static).as_posix()}") as answer:
                assert answer.status == 200 and answer.read() == script.read_bytes()
                assert answer.headers["Cache-Control"] == IMMUTABLE.decode()
                assert answer.headers["ETag"] is None
        with urllib.request.urlopen(url + "/finance") as answer:
            assert answer.read() == (static / "index.html").read_bytes()
            assert answer.headers["Cache-Control"] == "no-cache"
        with urllib.request.urlopen(url + "/_stcore/health") as answer:
            assert answer.read().strip() == b"ok"
