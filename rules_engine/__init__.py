"""rules_engine: a declarative rule language and watcher for conditional orders on KuCoin spot."""

__all__ = ["__version__"]

__version__ = "0.1.0"
