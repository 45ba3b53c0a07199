"""Guessing probe: wrong passwords for the Prefect user from this address, one new
connection each (as a guesser would), then the right credential from the same address.

Runs in a client container on the scenario network. Prints one JSON object: the codes of
the wrong guesses in order, the code and Retry-After of the right credential afterwards,
and the codes of the door and /api/health from the same address (not locked out).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl


def ask(
    context: ssl.SSLContext, name: str, method: str, path: str, headers: dict[str, str]
) -> tuple[int, str | None]:
    conn = http.client.HTTPSConnection(name, 443, context=context, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Retry-After")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--credential-file", required=True, help="an 'Authorization: ...' line")
    parser.add_argument("--user", required=True)
    parser.add_argument("--guesses", type=int, required=True)
    parser.add_argument("--door", required=True)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    with open(args.credential_file) as file:
        right = file.read().split(":", 1)[1].strip()
    guesses = []
    for number in range(args.guesses):
        token = base64.b64encode(f"{args.user}:guess-{number}".encode()).decode()
        code, _ = ask(
            context, args.name, "GET", "/api/flows/filter", {"Authorization": f"Basic {token}"}
        )
        guesses.append(code)
    right_code, right_retry = ask(context, args.name, "GET", "/", {"Authorization": right})
    door, _ = ask(context, args.name, "GET", args.door, {})
    health, _ = ask(context, args.name, "GET", "/api/health", {})
    print(
        json.dumps(
            {
                "guesses": guesses,
                "right": right_code,
                "right_retry_after": right_retry,
                "door": door,
                "health": health,
            }
        )
    )


if __name__ == "__main__":
    main()
