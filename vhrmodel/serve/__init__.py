"""`vhrmodel serve`: an HTTP API with dynamic micro-batching and a web page (upload and a drawing canvas).

`create_app(recognizer, ServeSettings(...))` builds the FastAPI app (`vhrmodel.serve.app`);
`MicroBatcher` groups concurrent lines into one model call (`vhrmodel.serve.batcher`);
`check_bind` is the rule for which addresses may be bound without a token.
"""

from __future__ import annotations

import ipaddress

from vhrdata.errors import VhrError


class ServeError(VhrError):
    """The server cannot start as asked (an unsafe bind, a bad option)."""


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback ranges (127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool = False) -> None:
    """Refuse to bind a non-loopback address without a token, unless `insecure`.

    Raises:
        ServeError: the bind would expose an unauthenticated API to the network.
    """
    if not is_loopback(host) and not token and not insecure:
        raise ServeError(f"refusing to serve on {host} without a token: anyone who can reach it could use the API. "
                         "Pass --token (or set VHR_TOKEN), or --insecure to serve without one")


def __getattr__(name):  # the app imports FastAPI; load it only when asked for
    if name in ("create_app", "ServeSettings", "model_description"):
        from vhrmodel.serve import app

        return getattr(app, name)
    if name in ("MicroBatcher", "QueueFull"):
        from vhrmodel.serve import batcher

        return getattr(batcher, name)
    raise AttributeError(name)
