"""Idle-socket probe: one client opens many connections and sends nothing on them (half
bare TCP, half after a finished TLS handshake), then another client signs up.

Runs in a client container that shares the edge's network namespace (NET_ADMIN): it adds
two IPv6 addresses in different /64s to the loopback, one for the idle connections and
one for the signup, so nginx sees two clients. Prints one JSON object: how many idle
connections were opened and how many were still open when the signup was answered, the
signup's code and seconds, and the seconds the whole probe took.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import ssl
import subprocess
import time

IDLE, SIGNER = "2001:db8:5::a", "2001:db8:6::a"


def connect(address: str) -> socket.socket:
    return socket.create_connection((address, 443), timeout=5, source_address=(address, 0))


def still_open(conns: list[socket.socket]) -> int:
    """Connections nginx has not closed (TLS may have sent data: only a hang-up counts)."""
    poller = select.poll()
    for conn in conns:
        poller.register(conn.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return len(conns) - len(poller.poll(0))


def signup(context: ssl.SSLContext, name: str, door: str, body: str) -> tuple[str, float]:
    start = time.monotonic()
    request = (
        f"POST {door} HTTP/1.1\r\nHost: {name}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}"
    )
    try:
        with context.wrap_socket(connect(SIGNER), server_hostname=name) as conn:
            conn.sendall(request.encode())
            line = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
            code = line.split(" ")[1] if " " in line else "closed"
    except OSError as error:
        code = type(error).__name__
    return code, round(time.monotonic() - start, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--door", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--count", type=int, required=True, help="idle connections in all")
    args = parser.parse_args()

    for address in (IDLE, SIGNER):
        subprocess.run(  # noqa: S603 (fixed command, addresses fixed here)
            ["/usr/sbin/ip", "-6", "addr", "add", f"{address}/64", "dev", "lo", "nodad"], check=True
        )
    context = ssl.create_default_context(cafile=args.ca)
    start = time.monotonic()
    held: list[socket.socket] = []
    failed = 0
    try:
        # TLS first (the slower to open): nginx closes each idle one client_header_timeout
        # after its handshake, so all must be open within that time.
        for number in range(args.count):
            try:
                conn = connect(IDLE)
                if number < args.count // 2:
                    conn = context.wrap_socket(conn, server_hostname=args.name)
                held.append(conn)
            except OSError:
                failed += 1
        opened = round(time.monotonic() - start, 3)
        code, seconds = signup(context, args.name, args.door, args.body)
        result = {
            "opened": len(held),
            "failed": failed,
            "open_seconds": opened,
            "still_open": still_open(held),
            "signup": code,
            "signup_seconds": seconds,
        }
    finally:
        for conn in held:
            conn.close()
        for address in (IDLE, SIGNER):
            subprocess.run(  # noqa: S603 (fixed command, addresses fixed here)
                ["/usr/sbin/ip", "-6", "addr", "del", f"{address}/64", "dev", "lo"], check=False
            )
    result["total_seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
