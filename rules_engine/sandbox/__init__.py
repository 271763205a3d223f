"""The sandbox: a KuCoin-compatible exchange on localhost. Never imports rules_engine.adapters."""
