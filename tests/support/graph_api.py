"""A local fake of Meta's Graph API messages endpoint, on 127.0.0.1 (``META_GRAPH_BASE_URL``).

It answers ``POST /{version}/{phone-number-id}/messages`` as Meta's "Text messages" page shows
(https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages:
``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}``) and
records each request (path, ``Authorization``, JSON body). A thread of the test process; stopped
by the context manager.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.frozen
class GraphRequest:
    path: str
    authorization: str | None
    body: dict[str, Any]


class GraphApiFake:
    def __init__(self) -> None:
        self.requests: list[GraphRequest] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        GraphRequest(self.path, self.headers.get("Authorization"), body)
                    )
                    number = len(fake.requests)
                answer = json.dumps(
                    {
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": body.get("to"), "wa_id": "33612345678"}],
                        "messages": [{"id": f"wamid.FAKE{number:04d}"}],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> GraphApiFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
