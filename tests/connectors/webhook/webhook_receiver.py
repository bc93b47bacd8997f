"""A real local HTTP receiver for the webhook tests (aiohttp on a free loopback port)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web


async def serve_post(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     path: str) -> tuple[web.AppRunner, str]:
    """Serve ``POST path`` with ``handler``; returns the runner (``await runner.cleanup()``) and the URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}{path}"
