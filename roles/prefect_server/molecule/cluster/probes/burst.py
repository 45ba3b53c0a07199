"""Send signups to the door at once, as many browsers would, and print what came back.

Each signup has its own address and Idempotency-Key. Prints one JSON object: the count of
each status, the flow run ids of the accepted ones, and the addresses sent.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import socket
import ssl
import threading
import uuid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True, help="the edge's IP address")
    parser.add_argument("--name", required=True, help="the edge's public name (SNI, Host)")
    parser.add_argument("--ca", required=True, help="the CA certificate to pin")
    parser.add_argument("--door", required=True, help="the door's path")
    parser.add_argument("--origin", required=True)
    parser.add_argument("--body", required=True, help="a signup (JSON); its email is replaced")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tag", required=True, help="makes this batch's addresses unique")
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *rest: object) -> list:
        # The public name is the edge's address here (SNI and certificate checks keep the name).
        return real_getaddrinfo(args.address if host == args.name else host, *rest)

    socket.getaddrinfo = getaddrinfo
    template = json.loads(args.body)
    statuses: collections.Counter[str] = collections.Counter()
    runs: list[str] = []
    emails = [f"{args.tag}-{n}@example.com" for n in range(args.count)]
    lock = threading.Lock()
    start = threading.Barrier(args.count)

    def send(email: str) -> None:
        connection = http.client.HTTPSConnection(args.name, 443, context=context, timeout=60)
        body = json.dumps({**template, "email": email})
        headers = {
            "Content-Type": "application/json",
            "Origin": args.origin,
            "Idempotency-Key": str(uuid.uuid4()),
        }
        start.wait()
        try:
            connection.request("POST", args.door, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            status = str(response.status)
        except OSError as error:
            status, answer = type(error).__name__, b"{}"
        with lock:
            statuses[status] += 1
            if status == "202":
                runs.append(json.loads(answer)["flow_run_id"])

    threads = [threading.Thread(target=send, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"status": dict(statuses), "runs": runs, "emails": emails}))


if __name__ == "__main__":
    main()
