"""TAESD live previews from the sidecar: the "Latent bridge (TAESD)" live preview method.

While this method is chosen, every step the extension sends for the viewer also asks the sidecar
for TAESD pictures of its job (`taesd: true`). The sidecar decodes them beside the sampler, newest
step wins, and pushes each one back on the connection; the reader thread keeps the newest per
job, already decoded. When the webui asks for a live preview (in its progress request thread),
the picture is there: nothing waits on the sidecar. Without one yet, the linear preview stands in.
"""

import io
import math
import threading

import numpy as np
import torch

from . import notices

METHOD = "Latent bridge (TAESD)"
# Jobs whose newest picture is kept: the one running and the few before it.
_KEPT_JOBS = 4

_lock = threading.Lock()
# job -> (step, [3, H, W] float tensors in [-1, 1], one per batch item)
_pictures = {}


def receive(event):
    """A message the sidecar pushed (reader thread): keeps the newest TAESD picture of its job."""
    if event.get("event") != "taesd":
        return
    job = event.get("job")
    error = event.get("error")
    if error is not None:
        message = error.get("message", "no TAESD decoder") if isinstance(error, dict) else str(error)
        notices.warn_once("taesd", f"TAESD previews are not available: {message}; live previews use the linear approximation")
        return
    items = _items(event)
    with _lock:
        _pictures.pop(job, None)
        _pictures[job] = (event.get("step"), items)
        while len(_pictures) > _KEPT_JOBS:
            del _pictures[next(iter(_pictures))]


def newest(job, item):
    """The newest TAESD picture of batch item `item` of `job`, as [1, 3, H, W] in [-1, 1], or None."""
    with _lock:
        kept = _pictures.get(job)
    if kept is None or item >= len(kept[1]):
        return None
    return kept[1][item].unsqueeze(0)


def forget():
    """Drops every kept picture (the extension is unloaded)."""
    with _lock:
        _pictures.clear()


def _items(event):
    """The pushed JPEG as one [3, H, W] tensor per batch item, the grid cut back into its cells."""
    from PIL import Image  # the webui's own dependency; only needed once TAESD pictures arrive

    image = event["image"]
    if image.get("format") != "jpeg":
        raise ValueError(f"unexpected picture format {image.get('format')!r}")
    with Image.open(io.BytesIO(image["data"])) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    batch = int(event["shape"][0]) if event.get("grid") else 1
    columns = math.ceil(math.sqrt(batch))
    rows = math.ceil(batch / columns)
    height, width = pixels.shape[0] // rows, pixels.shape[1] // columns
    # The same bin centres as the linear previews (previews._picture): the webui's *0.5+0.5, *255
    # and truncating cast then give back exactly the sidecar's bytes.
    whole = (torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() + 0.5) / 127.5 - 1.0
    return [whole[:, (i // columns) * height : (i // columns + 1) * height, (i % columns) * width : (i % columns + 1) * width] for i in range(batch)]
