"""A TCP proxy a test controls, to make a server unreachable without stopping it.

``TcpProxy(target_host, target_port)`` listens on 127.0.0.1 on a free port and forwards every
connection to the target. ``cut()`` closes every open connection and refuses new ones (the peer
sees a reset, as when a database or a network path dies); ``restore()`` accepts again. ``pause()``
keeps connections open but stops forwarding bytes (a hung peer); ``resume()`` lets them flow.

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        proxy.cut(); ...; proxy.restore()
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType
from typing import Self

BUFFER_BYTES = 65536
_Pair = tuple[socket.socket, socket.socket]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener: socket.socket | None = self._listen(listen_host, 0)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._accepting = True
        self._paused = threading.Event()
        self._closed = threading.Event()
        self.connections_made = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        listener = socket.create_server((host, port), reuse_port=False)
        listener.setblocking(False)
        return listener

    # -- control -------------------------------------------------------------------------------

    def cut(self) -> None:
        """Close every connection (with a reset) and refuse new ones until ``restore()``."""
        with self._lock:
            self._accepting = False
            pairs, self._pairs = self._pairs, []
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()  # new connections are refused from now on
        for pair in pairs:
            for sock in pair:
                _reset(sock)
        self._wake()

    def restore(self) -> None:
        """Accept and forward connections again (listening again before this returns)."""
        with self._lock:
            self._accepting = True
            if self._listener is None:
                self._listener = self._listen(self.host, self.port)
        self._wake()

    def pause(self) -> None:
        """Stop forwarding bytes; connections stay open, so peers hang."""
        self._paused.set()
        self._wake()

    def resume(self) -> None:
        self._paused.clear()
        self._wake()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._wake()
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the forwarding loop ---------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        while True:
            with self._lock:
                listener = self._listener
                pairs = list(self._pairs)
            if self._closed.is_set():
                break
            for key in list(selector.get_map().values()):
                if key.data == "accept" and key.fileobj is not listener:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        selector.unregister(key.fileobj)
            if listener is not None and listener not in {
                key.fileobj for key in selector.get_map().values()
            }:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.register(listener, selectors.EVENT_READ, "accept")
            registered = {
                key.fileobj
                for key in selector.get_map().values()
                if key.data not in ("wake", "accept")
            }
            wanted: set[socket.socket] = set()
            if not self._paused.is_set():
                for a, b in pairs:
                    wanted.update((a, b))
            for sock in registered - wanted:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.unregister(sock)
            for sock in wanted - registered:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.register(sock, selectors.EVENT_READ, "data")
            for key, _ in selector.select(timeout=0.5):
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif key.data == "accept":
                    self._accept()
                else:
                    self._forward(key.fileobj, selector)  # type: ignore[arg-type]
        selector.close()

    def _accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            client, _ = listener.accept()
        except (BlockingIOError, OSError):
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if not self._accepting:
                _reset(client)
                _reset(upstream)
                return
            self._pairs.append((client, upstream))
            self.connections_made += 1

    def _peer(self, sock: socket.socket) -> tuple[socket.socket, _Pair]:
        with self._lock:
            for pair in self._pairs:
                if sock is pair[0]:
                    return pair[1], pair
                if sock is pair[1]:
                    return pair[0], pair
        raise KeyError(sock)

    def _forward(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            peer, pair = self._peer(sock)
        except KeyError:
            return
        try:
            data = sock.recv(BUFFER_BYTES)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for item in pair:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(item)
            _reset(item)


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dead peer or a dropped path looks."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()
