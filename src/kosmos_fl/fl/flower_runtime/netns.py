"""A private network for the SuperLink: its loopback is reachable by no other process on the host.

Flower 1.42 serves the Control API (run submission, node keys: code execution on the server,
without login) on the same port as the Fleet and Runtime APIs, and that port has to be a TCP port.
On the host's loopback every local user can reach it (issue 16 row 9). So the server starts a
*bridge* process that enters a new user + network namespace (unprivileged: no root needed, only a
kernel and seccomp policy that allow user namespaces), brings that namespace's own ``lo`` up and
listens on a unix socket, mode 0600 in a 0700 folder. The SuperLink, its SuperExec and every
ServerApp join the namespace (:class:`Joiner`, run between fork and exec) and listen and talk on
*its* 127.0.0.1. The host reaches them only through the socket: the Fleet proxy and the in-process
Control API client. Each connection on the socket is checked (``SO_PEERCRED``: the same user id as
the server, else closed) and then relayed to the SuperLink, over TLS verified against the CA when
the SuperLink serves TLS; the socket hop itself is plain HTTP, which the kernel keeps between two
processes of the same user.

``python -m kosmos_fl.fl.flower_runtime.netns --socket PATH --port PORT [--ca-certfile CA]`` runs
the bridge; it exits with :data:`REFUSED` when the kernel refuses the namespace (e.g. Docker's
default seccomp profile), so that the server can fall back to loopback with a warning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import ssl
import struct
import sys
from collections.abc import Callable
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
#: Exit code of the bridge when the kernel refuses a user or network namespace.
REFUSED = 3
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_CHUNK = 256 * 1024


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def enter_private_network() -> None:
    """Move this (single-threaded) process into a new user + network namespace in which it keeps
    its own user and group id, and bring the namespace's loopback up. OSError when refused."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):  # needed before gid_map without CAP_SETGID
        _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack_from("H", ifreq, 16)[0]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def namespace_id(pid: int | str, kind: str = "net") -> str:
    """``net:[inode]`` of a process (``self`` or a pid): equal ids, same namespace."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


class Joiner:
    """A ``preexec_fn`` that moves the child into the user + network namespace of process ``pid``
    (the bridge), then runs ``then``. The namespace files are opened now, in the parent, so that a
    bridge that died in between cannot make the child stay on the host's network: ``setns`` fails
    and so does the start. :meth:`close` them once the children are started."""

    def __init__(self, pid: int, then: Callable[[], None] | None = None) -> None:
        self.fds = [os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in ("user", "net")]
        self.then = then
        self._libc = _libc()

    def __call__(self) -> None:  # pragma: no cover - runs in the child between fork and exec
        for fd, flag in zip(self.fds, (CLONE_NEWUSER, CLONE_NEWNET), strict=True):
            if self._libc.setns(fd, flag) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into the SuperLink's namespace: {os.strerror(err)}")
        if self.then is not None:
            self.then()

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a unix socket, as this namespace sees it (a
    user not mapped into it reads as the overflow id, 65534)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class Bridge:
    """Relays connections from the unix socket to the SuperLink inside the namespace, for peers of
    this process's user id only (so never run the server as ``nobody``, the id that every user not
    mapped into the namespace reads as)."""

    def __init__(self, port: int, upstream_ssl: ssl.SSLContext | None) -> None:
        self.port = port
        self.upstream_ssl = upstream_ssl
        self.uid = os.geteuid()
        #: Whether the SuperLink answered once: until then "unreachable" is its start-up, not news.
        self.up = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._open(writer)
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()

    async def _open(
        self, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the SuperLink for an accepted peer of the server's own user; else None."""
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid != self.uid:
            print(f"SuperLink bridge: refused a connection from user id {uid}", file=sys.stderr, flush=True)
            return None
        try:
            upstream = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.upstream_ssl,
                server_hostname="127.0.0.1" if self.upstream_ssl else None, limit=_CHUNK,
            )  # fmt: skip
        except OSError as exc:
            if self.up:
                print(f"SuperLink bridge: SuperLink unreachable: {exc}", file=sys.stderr, flush=True)
            return None
        self.up = True
        return upstream


async def serve(socket_path: Path, port: int, ca_certfile: str | None) -> None:
    """Listen on ``socket_path`` (0600; its folder must be private) until SIGTERM."""
    upstream_ssl = ssl.create_default_context(cafile=ca_certfile) if ca_certfile else None
    bridge = Bridge(port, upstream_ssl)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    old = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
    try:
        server = await asyncio.start_unix_server(bridge.handle, path=str(socket_path), limit=_CHUNK)
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        async with server:
            await stop.wait()
    finally:  # the socket and its private folder (made for this bridge) go with it
        with contextlib.suppress(OSError):
            socket_path.unlink()
            socket_path.parent.rmdir()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--ca-certfile", default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        enter_private_network()
    except OSError as exc:
        refused = exc.errno in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOSPC, errno.ENOSYS)
        print(f"SuperLink bridge: no private network namespace: {exc}", file=sys.stderr)
        sys.exit(REFUSED if refused else 1)
    asyncio.run(serve(args.socket, args.port, args.ca_certfile))


if __name__ == "__main__":
    main()
