"""Stall probe: hold anonymous websocket upgrades open, then time one signup and /api/health.

Prints one JSON object: the status line counts of the upgrades, and the signup's and
health's codes and seconds, all measured while the upgrade connections are still open.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import ssl
import time
import urllib.error
import urllib.request

UPGRADE = (
    "GET /api/events/in HTTP/1.1\r\nHost: {name}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: prefect\r\n\r\n"
)


def open_upgrade(
    context: ssl.SSLContext, address: str, name: str
) -> tuple[ssl.SSLSocket | None, str]:
    try:
        raw = socket.create_connection((address, 443), timeout=10)
        conn = context.wrap_socket(raw, server_hostname=name)
        conn.sendall(UPGRADE.format(name=name).encode())
        status = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        return conn, " ".join(status.split(" ")[1:2]) or "closed"
    except OSError as error:
        return None, type(error).__name__


def timed(request: urllib.request.Request, context: ssl.SSLContext) -> tuple[int, float]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, context=context, timeout=15) as answer:  # noqa: S310
            code = answer.status
    except urllib.error.HTTPError as error:
        code = error.code
    return code, round(time.monotonic() - start, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--door", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--count", type=int, default=150)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    held, statuses = [], collections.Counter()
    for _ in range(args.count):
        conn, status = open_upgrade(context, args.address, args.name)
        statuses[status] += 1
        if conn is not None:
            held.append(conn)

    # urllib connects by name: point the name at the host through a resolver override.
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *rest: object) -> list:
        return real_getaddrinfo(args.address if host == args.name else host, *rest)

    socket.getaddrinfo = getaddrinfo
    signup = urllib.request.Request(
        f"https://{args.name}{args.door}",
        data=args.body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    signup_code, signup_seconds = timed(signup, context)
    health = urllib.request.Request(f"https://{args.name}/api/health")
    health_code, health_seconds = timed(health, context)
    still_open = sum(1 for conn in held if conn.fileno() != -1)
    for conn in held:
        conn.close()
    print(
        json.dumps(
            {
                "upgrades": dict(statuses),
                "held_open": still_open,
                "signup": signup_code,
                "signup_seconds": signup_seconds,
                "health": health_code,
                "health_seconds": health_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
