"""``python -m app.cli …``: the `reco` command line (tests and app/tools/bench.py start it so)."""

from app.cli import main

main()
