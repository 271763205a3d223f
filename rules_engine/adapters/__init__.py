"""IO adapters: one sub-package per venue."""
