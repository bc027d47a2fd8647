"""Relay TCP connections from listening sockets it inherits to ports on 127.0.0.1 of the network
namespace it runs in (standard library only; run by path, not imported).

    nsenter -t PID -n -- python relay.py FD:PORT [FD:PORT …]

The parent binds the listeners on the host's loopback and hands them over; this process runs
in the node's network namespace, so the host reaches the sandbox's API server (and etcd)
without any address outside the namespaces the node created.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Awaitable, Callable


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def handler(port: int) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return handle


async def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        fd, port = (int(part) for part in spec.split(":"))
        listener = socket.socket(fileno=fd)
        servers.append(await asyncio.start_server(handler(port), sock=listener))
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
