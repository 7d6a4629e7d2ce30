"""A TCP proxy between a browser and a gateway, whose connections a test can cut: what a
network blip, a laptop's sleep or a proxy's idle timeout does to a page's open stream. The
browser sees a real socket reset under a response it is reading (and, while the proxy
refuses, every new connection reset too), not an emulation; the gateway sees its client go.

    with CutProxy(gateway.port) as proxy:
        page.goto(proxy.url)
        ...
        proxy.refuse()  # new connections are reset at once
        proxy.cut()     # every open one is reset now
        proxy.allow()
        proxy.freeze()  # every open one goes silent, closed to nobody (a laptop asleep)
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.shutdown(socket.SHUT_RD)  # wakes the thread blocked reading it
    with contextlib.suppress(OSError):
        sock.close()


class CutProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._frozen: set[socket.socket] = set()
        self._refusing = False
        self.cuts = 0  # connections reset by cut()
        threading.Thread(target=self._accept, name="cut-proxy", daemon=True).start()

    def refuse(self) -> None:
        """Reset every new connection as it comes, until allow()."""
        self._refusing = True

    def allow(self) -> None:
        self._refusing = False

    def cut(self) -> int:
        """Reset every open connection (both sides); returns how many there were."""
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)
        self.cuts += len(doomed) // 2
        return len(doomed) // 2

    def freeze(self) -> int:
        """Every open connection goes silent both ways, as one whose link died without a word
        (a laptop asleep, a NAT that forgot it): what either side sends is dropped, and
        nothing is closed. New connections work. Returns how many froze."""
        with self._lock:
            self._frozen |= self._open
            count = len(self._open) // 2
        return count

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self._frozen:
                    sink.sendall(data)
        except OSError:
            pass
        # One side closed (or was cut): the other goes too, as an HTTP connection would.
        with self._lock:
            mine = source in self._open
            self._open -= {source, sink}
            self._frozen -= {source, sink}
        if mine:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
