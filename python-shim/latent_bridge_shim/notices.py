"""Warnings for the user, each said once.

A sidecar that is down would otherwise produce one warning per sampling step. A topic is
warned about once, then stays quiet until `clear()` says the problem went away (the sidecar
answered again), so a later outage is reported afresh.
"""

import logging
import threading

logger = logging.getLogger("latent_bridge")

_lock = threading.Lock()
_raised = set()


def warn_once(topic, message):
    """Logs `message` unless `topic` was already warned about since it was last cleared."""
    with _lock:
        if topic in _raised:
            return
        _raised.add(topic)
    logger.warning("latent-bridge: %s", message)


def clear(*topics):
    """Forgets the given topics (all of them when none are given)."""
    with _lock:
        if topics:
            _raised.difference_update(topics)
        else:
            _raised.clear()
