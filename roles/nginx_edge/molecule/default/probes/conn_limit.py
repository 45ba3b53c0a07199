"""Connection-limit probe: hold more requests in progress at once from one address than
nginx_edge_conn_per_address allows, then ask once more while they are held and once after.

Each held request is a credentialed POST whose body never comes: nginx keeps it in progress
(waiting for the body) until client_body_timeout. Prints one JSON object: how many were
held, the status codes of those refused at once, and the codes of a request made while they
were held and of one made after they were closed.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import ssl
import time

HELD = (
    "POST /api/flows/filter HTTP/1.1\r\nHost: {name}\r\n{credential}\r\n"
    "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
)
HEALTH = "GET /api/health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"


def connect(context: ssl.SSLContext, address: str, name: str) -> ssl.SSLSocket:
    raw = socket.create_connection((address, 443), timeout=10)
    return context.wrap_socket(raw, server_hostname=name)


def status(conn: ssl.SSLSocket, timeout: float) -> str | None:
    """The status code of an answer that came within ``timeout``, else None."""
    conn.settimeout(timeout)
    try:
        line = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    except TimeoutError:
        return None
    return line.split(" ")[1] if " " in line else "closed"


def health(context: ssl.SSLContext, address: str, name: str) -> str | None:
    with connect(context, address, name) as conn:
        conn.sendall(HEALTH.format(name=name).encode())
        return status(conn, 10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--credential-file", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    with open(args.credential_file) as file:
        credential = file.read().strip()
    conns = []
    for _ in range(args.count):
        conn = connect(context, args.address, args.name)
        conn.sendall(HELD.format(name=args.name, credential=credential).encode())
        conns.append(conn)
    time.sleep(1)
    refused, held = collections.Counter(), 0
    for conn in conns:
        code = status(conn, 0.05)
        if code is None:
            held += 1
        else:
            refused[code] += 1
    during = health(context, args.address, args.name)
    for conn in conns:
        conn.close()
    time.sleep(1)
    after = health(context, args.address, args.name)
    print(json.dumps({"held": held, "refused": refused, "during": during, "after": after}))


if __name__ == "__main__":
    main()
