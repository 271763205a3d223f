"""The local web dashboard and the Prometheus metrics, over a store (and, inside `rules-engine
run --http`, the watcher's live snapshot)."""

from rules_engine.dashboard._app import Bind, BindError, make_app, parse_bind, serve_dashboard

__all__ = ["Bind", "BindError", "make_app", "parse_bind", "serve_dashboard"]
