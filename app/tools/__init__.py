"""Tooling apart from the product: benchmarks, the soak test, the load generator, simulators, demo data
and dataset converters. The product (app/api, app/console, app/cli, jobs/, sql/) never imports from here;
the CLI calls into it only from the commands that run these tools (reco generate, convert, demo, bench).
"""
