"""Streamlit's build files (the browser's scripts, styles and fonts) answered from memory.

A page's first render fetches its scripts one request each from the server process: 60
for any Streamlit page, ~130 for the finance queue (the data grid, selectboxes, date and
number inputs, toggles, metrics, ...), six at a time. Streamlit's file handler pays, for
each, a stat, an open and chunked reads, each on a worker thread, behind its session,
path-security and compression middleware, while the same interpreter imports the pages'
modules and runs the page. :class:`PageAssets`, in front of all of that, answers a request
for one of the hashed, immutable files under ``static/`` with the file's bytes, read on its
first request and kept (~25 MB at most); everything else goes to Streamlit as before.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

BUILD_FOLDER = "static"      # under Streamlit's static folder: the content-hashed build files
# what Streamlit sends for those files: their names change with their content
IMMUTABLE = b"public, immutable, max-age=31536000"


# files Streamlit sends with ``no-cache`` (their names do not change with their content)
UNHASHED = ("manifest.json",)
UNHASHED_SUFFIXES = (".html",)


def build_files(static_dir: Path) -> dict[str, Path]:
    """Each build file under ``static_dir`` by the URL path it is asked at (without the
    server's base path), e.g. ``/static/js/index.DormvYxC.js``; never a file whose name does
    not change with its content, which must not be answered as immutable."""
    static_dir = Path(static_dir)
    return {f"/{path.relative_to(static_dir).as_posix()}": path
            for path in (static_dir / BUILD_FOLDER).rglob("*")
            if path.is_file() and path.name not in UNHASHED
            and not path.name.endswith(UNHASHED_SUFFIXES)}


def content_type(path: str) -> bytes:
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return kind.encode()


class PageAssets:
    """ASGI middleware: Streamlit's build files from memory, all else to ``app``.

    Only a path that names one of the files listed at start-up is answered here (an exact
    dictionary lookup: no path is ever joined or resolved), with the headers Streamlit
    sends for it; anything else, a missing file included, is Streamlit's to answer.

    Args:
        app: the ASGI app it wraps (Streamlit's).
        static_dir: Streamlit's static folder (``index.html``, ``static/js``, ...).
        base_path: the server's base URL path (``server.baseUrlPath``), e.g. ``""``.
    """

    def __init__(self, app, static_dir, base_path: str = "") -> None:
        self.app = app
        self.base = f"/{base_path.strip('/')}" if base_path.strip("/") else ""
        self.files = build_files(Path(static_dir))
        self.served: dict[str, tuple[bytes, bytes]] = {}   # path -> (bytes, content type)

    async def __call__(self, scope, receive, send) -> None:
        found = self._file(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        body, kind = found
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", kind),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", IMMUTABLE)]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    def _file(self, scope) -> tuple[bytes, bytes] | None:
        """The bytes and content type of the build file ``scope`` asks for; None: not one
        (or unreadable)."""
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") \
                or not path.startswith(self.base):
            return None
        path = path[len(self.base):]
        if path not in self.files:
            return None
        if path not in self.served:
            # once per file and process; from the page cache a read takes well under a ms
            try:
                self.served[path] = (self.files[path].read_bytes(), content_type(path))
            except OSError:          # gone since start-up: Streamlit's handler says so
                return None
        return self.served[path]
