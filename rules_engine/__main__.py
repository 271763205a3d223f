"""`python -m rules_engine` is the same program as the `rules-engine` console script."""

from rules_engine.cli import main

raise SystemExit(main())
