"""The web console under /console: server-rendered pages over the reco.console_* SQL functions
(sql/085_console.sql). Register it with ``app.include_router(console.router)``."""

from app.console.routes import router

__all__ = ["router"]
