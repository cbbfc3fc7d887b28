"""What every `reco` command group shares: the consoles and the --tenant option."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

TenantOpt = Annotated[str | None, typer.Option("--tenant", envvar="RECO_TENANT", show_envvar=False,
                                               help="Tenant slug (default: RECO_TENANT or 'default').")]
