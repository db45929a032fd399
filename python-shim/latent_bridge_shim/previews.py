"""Live previews from the sidecar.

Two paths:
- every step's x0 (what the webui hands to `store_latent`) is queued for the sidecar's viewer
  without waiting: the sampler thread only puts a reference in a queue, the sender thread
  copies, packs and sends it;
- "Latent bridge" as the webui's own live preview method: `samples_to_images_tensor` asks the
  sidecar for the picture when the webui decodes a preview (in an HTTP thread, or in the
  sampler thread under --lowvram/--medvram), and falls back to "Approx cheap".
"""

import threading

import numpy as np
import torch
from modules import shared

from . import families, notices, settings, sidecar, taesd, wire
from .client import SidecarError, SidecarTimeout, SidecarUnavailable

METHOD = "Latent bridge"
FALLBACK_METHOD = "Approx cheap"
# A preview decode that takes longer than this is worth less than a cheap one now.
PREVIEW_TIMEOUT = 2.0
# The TAESD method's stand-in before its first picture: the progress request must not wait on it.
TAESD_FALLBACK_TIMEOUT = 0.05
# The webui shows these itself, so they are not published to the sidecar's viewer; a job of
# their own keeps them from superseding the per-step previews of the running job.
MIRROR_JOB = "webui live preview"

_steps_lock = threading.Lock()
_current_job = None


def send_step(latent):
    """Queues one step's x0 for the viewer (and, with the TAESD method, for its pictures);
    called in the sampler thread, returns at once."""
    publish = bool(settings.get(settings.PREVIEWS))
    wants_taesd = shared.opts.data.get("show_progress_type") == taesd.METHOD
    if not (publish or wants_taesd):
        return
    family = families.detect(shared.sd_model)
    if family is None:
        return
    job, step, total = _next_step()
    grid = bool(shared.opts.data.get("show_progress_grid", True))

    def fields():
        return {
            "latent": wire.encode(latent),
            "family": family,
            "job": job,
            "step": step,
            "total": total,
            "grid": grid,
            "noreply": True,
            "publish": publish,
            "taesd": wants_taesd,
        }

    sidecar.client().post("preview", fields)


def _next_step():
    """(job, step, total) for the x0 being stored now; step counts the steps done, 1 to total.

    The webui updates `state.sampling_step` after each step's model evaluation, so the x0 of
    step i (from 0) arrives while it still says i-1, and 0 for both of the first two steps.
    """
    global _current_job
    state = shared.state
    job = _job_name(state)
    total = max(int(getattr(state, "sampling_steps", 0) or 0), 1)
    with _steps_lock:
        if job != _current_job:
            _current_job = job
            return job, 1, total
    return job, min(int(state.sampling_step) + 2, total), total


def _job_name(state):
    """One viewer card per sampling pass: the hires pass is a job of its own in the webui too."""
    return f"{getattr(state, 'job', '') or 'webui'} {getattr(state, 'job_timestamp', '0')} #{int(getattr(state, 'job_no', 0)) + 1}"


def wants_method(approximation, own_index, method=METHOD):
    """Whether a samples_to_images_tensor call is a live preview to be made with `method`."""
    if approximation == own_index:
        return True
    if approximation is None or (shared.state.interrupted and shared.opts.data.get("live_preview_fast_interrupt", False)):
        return shared.opts.data.get("show_progress_type") == method
    return False


def taesd_images(sample):
    """The TAESD method: the newest TAESD picture of the running job for this sample, already at
    hand; without one yet, the linear preview (asked for with a short timeout), else None."""
    job = _job_name(shared.state)
    picture = taesd.newest(job, _item_of_current_latent(sample))
    if picture is not None:
        return picture.to(sample.device)
    return images(sample, timeout=TAESD_FALLBACK_TIMEOUT)


def _item_of_current_latent(sample):
    """Which batch item of the state's latent `sample` is: the webui previews a grid one item at a
    time, each a view into `state.current_latent`, so the item shows in where its data starts."""
    current = getattr(shared.state, "current_latent", None)
    if not isinstance(current, torch.Tensor) or current.dim() != 4 or current.shape[0] < 2:
        return 0
    offset = sample.data_ptr() - current.data_ptr()
    item_bytes = current.stride(0) * current.element_size()
    if offset < 0 or offset % item_bytes != 0 or offset // item_bytes >= current.shape[0]:
        return 0
    return offset // item_bytes


def images(sample, timeout=PREVIEW_TIMEOUT):
    """[-1, 1] RGB tensors [B, 3, H, W] for a batch of latents, or None (warned) when the sidecar cannot."""
    family = families.detect(shared.sd_model)
    if family is None:
        notices.warn_once("family", f"cannot tell the latent family of the loaded checkpoint; live previews use {FALLBACK_METHOD}")
        return None
    timeout = min(timeout, settings.timeout())
    client = sidecar.client()
    pictures = []
    try:
        for latent in sample:
            fields = {"latent": wire.encode(latent.unsqueeze(0)), "family": family, "job": MIRROR_JOB, "publish": False}
            reply = client.request("preview", fields, timeout)
            if reply.get("superseded"):
                # Another thread asked for the same card at the same moment; cheap will do this once.
                return None
            pictures.append(_picture(reply.get("image")))
    except (SidecarUnavailable, SidecarTimeout) as error:
        notices.warn_once("sidecar", f"{error}; live previews use {FALLBACK_METHOD}")
        return None
    except SidecarError as error:
        notices.warn_once(f"error:{error.code}", f"the sidecar could not make a {family} preview: {error}; live previews use {FALLBACK_METHOD}")
        return None
    except wire.WireError as error:
        notices.warn_once("reply", f"{error}; live previews use {FALLBACK_METHOD}")
        return None
    notices.clear("sidecar", "reply")
    return torch.stack(pictures).to(sample.device)


def _picture(image):
    """The sidecar's RGB8 image as a [3, H, W] float tensor in [-1, 1], as the webui's decoders return."""
    try:
        width, height, data = int(image["width"]), int(image["height"]), image["data"]
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    except (KeyError, TypeError, ValueError) as error:
        raise wire.WireError(f"the sidecar sent an unreadable preview image ({error!r})") from error
    # Bin centres: the webui turns [-1, 1] back into bytes with *0.5+0.5, *255 and a truncating
    # cast, which then gives exactly the sidecar's bytes.
    return (torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() + 0.5) / 127.5 - 1.0
