"""Fairness probe: many addresses send junk to the door, each within its own limit,
while one fresh address signs up at a steady pace.

Runs in a client container on the scenario network with NET_ADMIN: it adds the attacker
addresses and the fresh one to its own interface. Prints one JSON object with the
status counts of the junk and of the signups.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import ipaddress
import json
import ssl
import subprocess
import threading
import time

Request = tuple[str, str | None, dict[str, str]]
JUNK: list[Request] = [
    ("GET", None, {}),
    ("POST", '{"nickname": "x"}', {"Content-Type": "application/json"}),
    ("POST", "{}", {"Content-Type": "application/json", "Origin": "https://evil.test"}),
    ("OPTIONS", None, {"Origin": "https://galatek.test", "Access-Control-Request-Method": "POST"}),
    ("POST", "hello", {"Content-Type": "text/plain"}),
]


def ask(
    context: ssl.SSLContext,
    source: str,
    args: argparse.Namespace,
    request: Request,
    timeout: float = 10,
) -> str:
    method, body, headers = request
    conn = http.client.HTTPSConnection(
        args.name, 443, context=context, timeout=timeout, source_address=(source, 0)
    )
    try:
        conn.request(method, args.door, body=body, headers=headers)
        return str(conn.getresponse().status)
    except OSError as error:
        return type(error).__name__
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--door", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--subnet", required=True, help="the host's address/prefix")
    parser.add_argument("--attackers", type=int, default=30)
    parser.add_argument("--signups", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.5)
    args = parser.parse_args()

    hosts = list(ipaddress.ip_interface(args.subnet).network.hosts())
    sources = [str(address) for address in hosts[-(args.attackers + 1) :]]
    for source in sources:
        subprocess.run(  # noqa: S603 (fixed command, addresses computed here)
            ["/usr/sbin/ip", "addr", "add", f"{source}/32", "dev", "eth0"], check=True
        )
    fresh, attackers = sources[-1], sources[:-1]

    context = ssl.create_default_context(cafile="/ca.crt")
    # One GET per new address first, not counted: the host learns where each
    # address lives (a neighbour entry left by an earlier run would delay the first answer).
    warm_up = [
        threading.Thread(
            target=ask, args=(context, source, args, ("GET", None, {})), kwargs={"timeout": 30}
        )
        for source in sources
    ]
    for thread in warm_up:
        thread.start()
    for thread in warm_up:
        thread.join()
    junk: collections.Counter[str] = collections.Counter()
    signups: list[list[str]] = []
    lock = threading.Lock()
    duration = args.signups * args.interval

    def attack(index: int, source: str) -> None:
        time.sleep(index * args.interval / len(attackers))
        deadline = time.monotonic() + duration
        turn = index
        while time.monotonic() < deadline:
            status = ask(context, source, args, JUNK[turn % len(JUNK)])
            with lock:
                junk[status] += 1
            turn += 1
            time.sleep(args.interval)

    threads = [threading.Thread(target=attack, args=(i, s)) for i, s in enumerate(attackers)]
    for thread in threads:
        thread.start()
    # The fresh visitor behaves like the website's script: one Idempotency-Key per form
    # fill, a 503 (Prefect busy) sent again with the same key. Every answer is recorded.
    for number in range(args.signups):
        time.sleep(args.interval)
        headers = {
            "Content-Type": "application/json",
            "Origin": "https://galatek.test",
            "Idempotency-Key": f"fairness-{time.time_ns()}-{number}",
        }
        answers = [ask(context, fresh, args, ("POST", args.body, headers))]
        while answers[-1] == "503" and len(answers) < 3:
            time.sleep(1)
            answers.append(ask(context, fresh, args, ("POST", args.body, headers)))
        signups.append(answers)
    for thread in threads:
        thread.join()
    print(json.dumps({"attackers": len(attackers), "junk": dict(junk), "signups": signups}))


if __name__ == "__main__":
    main()
