"""A stateful local emulator of Perfect Corp's AI Photo Background Change API (S2S v2.0).

The pipeline never imports this package: it reaches the sandbox over HTTP, at its base URL.
"""

from .app import create_app
from .server import SandboxServer, serve
from .settings import SandboxSettings

__all__ = ["SandboxServer", "SandboxSettings", "create_app", "serve"]
