"""`rules-engine sandbox`: run the local KuCoin-compatible exchange.

The first line on stdout is one JSON object a script can read:
`{"rest_url", "api_key", "api_secret", "api_passphrase", "key_version": "2"}` with the demo
credentials. When the config holds no demo key, the secret and passphrase are printed as null:
secrets of real keys never leave the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from rules_engine.sandbox.config import SandboxConfig, load_config
from rules_engine.sandbox.server import build_state, run_server

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox", help="run the local KuCoin-compatible exchange",
        description="Run a KuCoin-compatible spot exchange on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--config", type=Path, help="JSON config: keys, balances, quotas, faults")
    parser.add_argument("--state", type=Path, help="file that keeps orders and balances")
    parser.add_argument("--feed", choices=("synthetic", "candles", "recorded"),
                        default="synthetic")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic walk")
    parser.set_defaults(handler=run)


def banner(config: SandboxConfig, rest_url: str) -> str:
    key = config.first_key()
    return json.dumps({
        "rest_url": rest_url,
        "api_key": key.api_key,
        "api_secret": key.api_secret.get_secret_value() if key.demo else None,
        "api_passphrase": key.api_passphrase.get_secret_value() if key.demo else None,
        "key_version": "2",
    })


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ValidationError as exc:
        # Field paths and reasons only: the values given (maybe a secret) are never echoed.
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"rules-engine sandbox: config {where}: {error['msg']}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"rules-engine sandbox: cannot read config: {exc}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("rules-engine sandbox: --speed must be > 0", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        state = build_state(config, feed_name=args.feed, seed=args.seed, speed=args.speed,
                            state_file=args.state)
    except (OSError, ValueError) as exc:
        print(f"rules-engine sandbox: cannot start: {exc}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        sys.stdout.write(banner(config, url) + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(run_server(state, args.host, args.port, ready))
    except OSError as exc:
        print(f"rules-engine sandbox: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0
