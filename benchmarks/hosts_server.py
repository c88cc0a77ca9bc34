"""A fast HTTP/1.1 keep-alive server on 127.0.0.1 for the hosts axis, counting what it serves.

    python benchmarks/hosts_server.py        # prints its port, serves until stdin closes

One asyncio process, so that it runs on the other core beside the client it serves. Every
request is answered ``ok`` on a connection kept alive; ``GET /_count`` answers "<connections>
<requests>" accepted so far, itself not counted. It listens on 127.0.0.1 only: the sweep gives
each of its thousands of hosts a name that resolves there (see sweep.py).
"""

from __future__ import annotations

import asyncio
import sys

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
counts = [0, 0]  # connections, requests


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    counted = False
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /_count "):
                body = f"{counts[0]} {counts[1]}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                if not counted:
                    counted = True
                    counts[0] += 1
                counts[1] += 1
                writer.write(_OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
