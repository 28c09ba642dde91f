"""A stand-in host launcher for the cloud's host tests: real loopback listeners, no SSH server.

It records every HostRequest the cloud makes, so tests can check what a host would be told,
and its "hosts" hold two listening sockets so the reported ports are really reachable. Tests
that need a real SSH server and proxy use the host package itself (test_vast_real_host.py).
"""

from __future__ import annotations

import socket
import threading

from comfyfleet.sandbox.vast.hosts import HostHandle, HostRequest


class ListeningHost:
    def __init__(self, request: HostRequest) -> None:
        self.request = request
        self._sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
        self.ssh_port = self._sockets[0].getsockname()[1]
        self.proxy_port = self._sockets[1].getsockname()[1]
        self.pid = 0  # not a process of its own
        self.stopped = False
        self.died = False

    def alive(self) -> bool:
        return not (self.stopped or self.died)

    def wait_ready(self, timeout: float) -> None:
        return None

    def stop(self) -> None:
        self.stopped = True
        for sock in self._sockets:
            sock.close()

    def move_ssh(self) -> int:
        """Listen for SSH on a new port (what a host's own "move" knob does)."""
        self._sockets[0].close()
        self._sockets[0] = socket.create_server(("127.0.0.1", 0))
        self.ssh_port = self._sockets[0].getsockname()[1]
        return self.ssh_port

    def die(self) -> None:
        """The process exits on its own (a crash)."""
        self.died = True
        for sock in self._sockets:
            sock.close()


class RecordingLauncher:
    def __init__(self, fail_with: str | None = None) -> None:
        self.hosts: list[ListeningHost] = []
        self.fail_with = fail_with
        self._lock = threading.Lock()

    def launch(self, request: HostRequest) -> HostHandle:
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        host = ListeningHost(request)
        with self._lock:
            self.hosts.append(host)
        return host

    def for_instance(self, instance_id: int) -> list[ListeningHost]:
        with self._lock:
            return [h for h in self.hosts if h.request.instance_id == instance_id]

    def close(self) -> None:
        for host in self.hosts:
            if not host.stopped:
                host.stop()
