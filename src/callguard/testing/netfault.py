"""A TCP proxy that can cut the network without closing anything (a partition).

Closing a socket is the easy failure: both ends learn of it at once.  A real
partition (a switch dies, a firewall drops packets) closes nothing; each
side just stops hearing the other, and whatever waits on a reply hangs.
:class:`PartitionProxy` forwards bytes between its clients and ``target``
on a thread until :meth:`partition`, then silently drops everything in
both directions while keeping every connection open, until :meth:`heal`.
Used by the high-availability tests between a listener and PostgreSQL.
"""

from __future__ import annotations

import selectors
import socket
import threading


class PartitionProxy:
    """``127.0.0.1:<port>`` -> ``target``; :meth:`partition` / :meth:`heal` cut and restore it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._partitioned = threading.Event()
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="partition-proxy", daemon=True)
        self._thread.start()

    def partition(self) -> None:
        """From now on, drop every byte in both directions (connections stay open)."""
        self._partitioned.set()

    def heal(self) -> None:
        self._partitioned.clear()

    @property
    def partitioned(self) -> bool:
        return self._partitioned.is_set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in list(self._peers) + [self._server]:
            sock.close()
        self._selector.close()

    def __enter__(self) -> "PartitionProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        self._server.setblocking(False)
        self._selector.register(self._server, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    self._accept()
                else:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._server.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client], self._peers[upstream] = upstream, client

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        peer = self._peers.get(sock)
        if not data or peer is None:
            self._drop(sock)
            return
        if self._partitioned.is_set():
            return  # swallowed, like a dead link
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
