"""Tools for tests that act from inside a real guest: an SSH key and client (OpenSSH into the
guest's dropbear), probes run in the guest, and recording listeners inside a test namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BOOT_TIMEOUT = 90

LISTENER = r"""
import socket, sys, threading
def serve(addr, port, log):
    server = socket.create_server((addr, port))
    while True:
        conn, peer = server.accept()
        conn.settimeout(2)
        try:
            request = conn.recv(1024).split()
            path = request[1].decode() if len(request) > 1 else "-"
        except OSError:
            path = "?"
        with open(log, "a") as f:
            f.write(f"{addr}:{port} {peer[0]} {path}\n")
        try:
            conn.sendall(f"HTTP/1.0 200 OK\r\n\r\nLISTENER {addr}:{port}\n".encode())
        except OSError:
            pass
        conn.close()
for spec in sys.argv[2:]:
    addr, port = spec.rsplit(":", 1)
    threading.Thread(target=serve, args=(addr, int(port), sys.argv[1])).start()
print("listening", flush=True)
"""


class SSHKey:
    """A fresh ed25519 key pair; ``run`` executes a command in a guest through its forward."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "guest_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.path)],
                       check=True)
        self.public = self.path.with_suffix(".pub").read_text().strip()

    def run(self, host: str, port: int, command: str, timeout: float = 120) -> str:
        """The command's stdout (stderr appended); raises when SSH itself fails."""
        done = subprocess.run(
            ["ssh", "-i", str(self.path), "-p", str(port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR", f"root@{host}", command],
            check=False, capture_output=True, text=True, errors="replace", timeout=timeout,
        )
        if done.returncode == 255:
            raise ConnectionError(f"ssh to {host}:{port} failed: {done.stderr.strip()}")
        return done.stdout + done.stderr


def probe(target: str, path: str = "") -> str:
    """A guest shell snippet that fetches ``http://target/path`` and prints what it got and
    wget's exit code (5 s timeout; busybox wget -T crashes)."""
    return (f"out=$(timeout 5 wget -q -O - http://{target}/{path} 2>&1); rc=$?; "
            f'echo "{target} => $(echo $out) rc=$rc"')


def probe_all(key: SSHKey, host: str, port: int, targets: list[str]) -> dict[str, str]:
    """Probe every target from inside the guest; answer target -> what the guest saw."""
    out = key.run(host, port, "; ".join(probe(t) for t in targets))
    seen = dict(line.split(" => ", 1) for line in out.splitlines() if " => " in line)
    assert set(seen) == set(targets), out
    return seen


class NsListeners:
    """Recording HTTP-ish listeners on ``addr:port`` specs inside network namespace ``ns``."""

    def __init__(self, ns: str, log: Path, specs: list[str]) -> None:
        self.log = log
        log.touch()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, str(log), *specs],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "listening"

    def hits(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def ns_sh(ns: str, command: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], check=True,
                          capture_output=True, text=True).stdout

