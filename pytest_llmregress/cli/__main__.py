"""``python -m pytest_llmregress.cli``: the ``llmregress`` command."""

from pytest_llmregress.cli import main

raise SystemExit(main())
