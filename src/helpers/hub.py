"""Whether the Hugging Face hub can be reached, asked once and quickly.

Without an answer ``from_pretrained`` and ``load_dataset`` retry for tens of
seconds and then fail deep inside a library; asking first lets the course
say in one line what is missing and what to use instead.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse

from huggingface_hub import constants

__all__ = ["hub_unreachable"]


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """``None`` when the hub answers a TCP connection within ``timeout`` s, else why not.

    The attempt runs in a thread, so even a name lookup that hangs (no DNS
    answer at all) costs at most ``timeout`` seconds.
    """
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host} unreachable ({err.__class__.__name__}: {err})")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:g} s"
