"""A stand-in for the model hub's HTTP API on 127.0.0.1, as much of it as ``snapshot_download`` and
``hf_hub_download`` use (huggingface_hub honours ``HF_ENDPOINT``): a repository's revision and file tree, and each
file by HEAD and GET (plain HTTP downloads, no Xet). It records the paths of the files fetched."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, repo_id: str, files: dict[str, bytes], *, delays_s: dict[str, float] | None = None) -> None:
        self.repo_id = repo_id
        self.files = files
        self.delays_s = delays_s or {}  # seconds before the body of a file's GET (a slow download)
        self.fetched: list[str] = []
        self.url = ""

    def tree(self) -> list[dict[str, object]]:
        return [
            {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for path, data in sorted(self.files.items())
        ]


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    api = re.compile(rf"^/api/models/{re.escape(hub.repo_id)}/(revision|tree)/[^/]+(?:/.*)?$")
    resolve = re.compile(rf"^/{re.escape(hub.repo_id)}/resolve/[^/]+/(.+)$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if match := api.match(path):
                body = (
                    {"id": hub.repo_id, "sha": COMMIT, "siblings": [{"rfilename": f} for f in hub.files]}
                    if match.group(1) == "revision"
                    else hub.tree()
                )
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            elif (match := resolve.match(path)) and match.group(1) in hub.files:
                data = hub.files[match.group(1)]
                if self.command == "GET":
                    hub.fetched.append(match.group(1))
                    time.sleep(hub.delays_s.get(match.group(1), 0.0))
                self._send(
                    200,
                    data,
                    {
                        "X-Repo-Commit": COMMIT,
                        "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                        "Content-Type": "application/octet-stream",
                    },
                )
            else:
                self._send(
                    404,
                    b'{"error": "not found"}',
                    {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"},
                )

        do_HEAD = do_GET

    return Handler


@contextmanager
def serving(hub: Hub) -> Iterator[Hub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
