"""The edge's sign-in counter: nginx asks it (auth_request) before a private request.

nginx compares the credential itself and sends only the verdict and the client's key
(address, or /64 for IPv6) in two headers; this process never sees the secret. It counts
failed sign-ins per client over a sliding window and answers:

- 403 when the client already failed ``--failures`` times in the last ``--window``
  seconds, whatever the request carries (nginx answers 429): a right guess from a
  locked-out address is refused like a wrong one, so the answer tells a guesser nothing;
- 204 for the right credential;
- 401 for a wrong or absent one (a wrong one is counted; an absent one, a browser's first
  visit before it asks for the password, is not).

Python's standard library only; state is in memory (a restart forgets the counts).
"""

from __future__ import annotations

import argparse
import collections
import http.server
import logging
import threading
import time

CLIENT = "X-Edge-Client"
VERDICT = "X-Edge-Credential"  # right, wrong or none (nginx's comparison)
MAX_CLIENTS = 100_000  # beyond this, clients with no failure in the window are dropped


class Counter:
    """Failed sign-ins per client over a sliding window (thread-safe)."""

    def __init__(self, failures: int, window: float) -> None:
        self.failures = failures
        self.window = window
        self.lock = threading.Lock()
        self.seen: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        times = self.seen.setdefault(client, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def answer(self, client: str, verdict: str) -> int:
        now = time.monotonic()
        with self.lock:
            times = self._recent(client, now)
            if len(times) >= self.failures:
                return 403
            if verdict == "right":
                return 204
            if verdict == "wrong":
                times.append(now)
                if len(times) == self.failures:
                    logging.warning("sign-in locked for %s: %d failures", client, len(times))
            if len(self.seen) > MAX_CLIENTS:
                self.seen = {c: t for c, t in self.seen.items() if self._recent(c, now)}
            return 401


def handler(counter: Counter) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = counter.answer(self.headers.get(CLIENT, ""), self.headers.get(VERDICT, ""))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class Server(http.server.ThreadingHTTPServer):
    # A UI's first visit asks for about a hundred files at once, each checked here.
    request_queue_size = 1024
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True, help="host:port (loopback)")
    parser.add_argument("--failures", type=int, required=True)
    parser.add_argument("--window", type=float, required=True, help="seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)), handler(Counter(args.failures, args.window)))
    server.serve_forever()


if __name__ == "__main__":
    main()
