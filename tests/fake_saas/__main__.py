"""Run the fake Notion + Resend + Turnstile siteverify server:
``python -m fake_saas --host 0.0.0.0 --port 8099``.

Every flag can also come from the environment variable named in its help.
"""

from __future__ import annotations

import argparse
import os
import sys

from fake_saas import (
    DEFAULT_DATA_SOURCE_ID,
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    DEFAULT_RESEND_SENDING_API_KEY,
    DEFAULT_TURNSTILE_SECRET,
    make_server,
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake_saas", description=__doc__)
    flags: list[tuple[str, str, str, type]] = [
        ("--host", "FAKE_SAAS_HOST", "127.0.0.1", str),
        ("--port", "FAKE_SAAS_PORT", "8099", int),
        ("--notion-token", "FAKE_NOTION_TOKEN", DEFAULT_NOTION_TOKEN, str),
        ("--notion-database-id", "FAKE_NOTION_DATABASE_ID", DEFAULT_DATABASE_ID, str),
        ("--notion-data-source-id", "FAKE_NOTION_DATA_SOURCE_ID", DEFAULT_DATA_SOURCE_ID, str),
        ("--resend-api-key", "FAKE_RESEND_API_KEY", DEFAULT_RESEND_API_KEY, str),
        (
            "--resend-sending-api-key",
            "FAKE_RESEND_SENDING_API_KEY",
            DEFAULT_RESEND_SENDING_API_KEY,
            str,
        ),
        ("--resend-domains", "FAKE_RESEND_DOMAINS", "", str),
        ("--notion-rate", "FAKE_NOTION_RATE", "3", float),
        ("--notion-burst", "FAKE_NOTION_BURST", "10", float),
        ("--resend-rate", "FAKE_RESEND_RATE", "2", float),
        ("--resend-burst", "FAKE_RESEND_BURST", "2", float),
        ("--turnstile-secret", "FAKE_TURNSTILE_SECRET", DEFAULT_TURNSTILE_SECRET, str),
    ]
    for flag, env, default, kind in flags:
        parser.add_argument(
            flag, type=kind, default=kind(_env(env, default)), help=f"env {env}, default {default}"
        )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = make_server(
        args.host,
        args.port,
        verbose=args.verbose,
        notion_token=args.notion_token,
        resend_api_key=args.resend_api_key,
        resend_sending_api_key=args.resend_sending_api_key,
        # Verified sender domains (comma-separated); empty: every domain is verified.
        resend_domains={d: "verified" for d in args.resend_domains.split(",") if d} or None,
        database_id=args.notion_database_id,
        data_source_id=args.notion_data_source_id,
        notion_rate=args.notion_rate,
        notion_burst=args.notion_burst,
        resend_rate=args.resend_rate,
        resend_burst=args.resend_burst,
        turnstile_secret=args.turnstile_secret,
    )
    print(f"fake_saas listening on {server.base_url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
