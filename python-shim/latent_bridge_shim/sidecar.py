"""The one connection to the sidecar, following the URL and token in the settings."""

import threading

from . import VERSION, settings, taesd
from .client import SidecarClient

_lock = threading.Lock()
_client = None


def client():
    """The client for the configured URL and token; a changed setting replaces it."""
    global _client
    url = str(settings.get(settings.URL)).strip()
    token = str(settings.get(settings.TOKEN)).strip() or None
    current = _client
    if current is not None and current.url == url and current.token == token:
        return current
    with _lock:
        if _client is None or _client.url != url or _client.token != token:
            if _client is not None:
                _client.close()
            _client = SidecarClient(url, token, client_name=f"latent-bridge-shim/{VERSION} (webui)", on_event=taesd.receive)
        return _client


def close():
    """Closes the connection (at exit, or when the extension is unloaded for good)."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None
