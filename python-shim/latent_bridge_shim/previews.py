"""Live previews from the sidecar.

Two paths:
- every step's x0 (what the webui hands to `store_latent`) is queued for the sidecar's viewer
  without waiting: the sampler thread only puts a reference in a queue, the sender thread
  copies, packs and sends it. Each sampling pass is a job of its own: what the viewer shows
  about it (prompt, model, seed, ...) is gathered once as the pass starts, and how it ended
  (finished, interrupted, failed) is queued the same way when it ends;
- "Latent bridge" as the webui's own live preview method: `samples_to_images_tensor` asks the
  sidecar for the picture when the webui decodes a preview (in an HTTP thread, or in the
  sampler thread under --lowvram/--medvram), and falls back to "Approx cheap".
"""

import numbers
import threading

import numpy as np
import torch
from modules import sd_samplers_common, shared

from . import families, notices, settings, sidecar, taesd, wire
from .client import SidecarError, SidecarTimeout, SidecarUnavailable, describe_error

METHOD = "Latent bridge"
FALLBACK_METHOD = "Approx cheap"
# A preview decode that takes longer than this is worth less than a cheap one now.
PREVIEW_TIMEOUT = 2.0
# The TAESD method's stand-in before its first picture: the progress request must not wait on it.
TAESD_FALLBACK_TIMEOUT = 0.05
# The webui shows these itself, so they are not published to the sidecar's viewer; a job of
# their own keeps them from superseding the per-step previews of the running job.
MIRROR_JOB = "webui live preview"

# Lengths the sidecar accepts (docs/protocol.md, `preview`'s `meta` and `end`), in characters:
# a character is at most two of the UTF-16 units the sidecar counts.
_PROMPT_CHARS = 2000
_NAME_CHARS = 120
_SAMPLER_CHARS = 30
_ERROR_CHARS = 120
_MAX_SEED = 2**53 - 1
# What the webui's samplers raise to stop a pass; launch_sampling normally catches it itself.
_INTERRUPTED = getattr(sd_samplers_common, "InterruptedException", ())


class _Pass:
    """One sampling pass: a job, one card in the viewer."""

    __slots__ = ("job", "meta", "sent", "published")

    def __init__(self, job, meta):
        self.job = job
        self.meta = meta
        # Whether a step of it was queued, and whether one was for the viewer: only then is its end worth sending.
        self.sent = False
        self.published = False


_pass_lock = threading.Lock()
_current_pass = None


def begin_pass(sampler):
    """Called in the sampler thread as a sampling pass starts: a few attribute reads, nothing sent."""
    global _current_pass
    meta = _meta(_processing_of(sampler), sampler) if settings.get(settings.PREVIEWS) else {}
    with _pass_lock:
        _current_pass = _Pass(_job_name(shared.state), meta)


def end_pass(error=None):
    """Called in the sampler thread as a pass ends, with what it raised if anything: queues how it
    ended behind its last step. The webui's Interrupt and Skip make the pass return early."""
    global _current_pass
    with _pass_lock:
        ended, _current_pass = _current_pass, None
    if ended is None or not ended.published:
        return
    state = shared.state
    if isinstance(error, _INTERRUPTED) or (error is None and (state.interrupted or state.skipped)):
        fields = {"outcome": "interrupted"}
    elif error is not None:
        fields = {"outcome": "failed", "error": describe_error(error)[:_ERROR_CHARS]}
    else:
        fields = {"outcome": "finished"}
    sidecar.client().post("end", lambda: dict(fields, job=ended.job, noreply=True))


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
    job, meta, step, total = _next_step(publish)
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
            **({"meta": meta} if publish else {}),
        }

    sidecar.client().post("preview", fields)


def _next_step(publish):
    """(job, meta, step, total) for the x0 being stored now; step counts the steps done, 1 to total.

    The webui updates `state.sampling_step` after each step's model evaluation, so the x0 of
    step i (from 0) arrives while it still says i-1, and 0 for both of the first two steps.
    """
    global _current_pass
    state = shared.state
    job = _job_name(state)
    total = max(int(getattr(state, "sampling_steps", 0) or 0), 1)
    with _pass_lock:
        current = _current_pass
        if current is None or current.job != job:
            # A pass whose start the launch_sampling hook did not see: it goes without metadata.
            current = _current_pass = _Pass(job, {})
        first = not current.sent
        current.sent = True
        current.published = current.published or publish
    return job, current.meta, 1 if first else min(int(state.sampling_step) + 2, total), total


def _job_name(state):
    """One viewer card per sampling pass: the hires pass is a job of its own in the webui too."""
    return f"{getattr(state, 'job', '') or 'webui'} {getattr(state, 'job_timestamp', '0')} #{int(getattr(state, 'job_no', 0)) + 1}"


def _processing_of(sampler):
    """The processing object `p` of the pass: the webui hands it to the sampler (`initialize`) before launching it."""
    return getattr(getattr(sampler, "model_wrap_cfg", None), "p", None) or getattr(sampler, "p", None)


def _meta(p, sampler):
    """What the viewer shows about the pass, from the webui's own objects (docs/protocol.md `meta`)."""
    hires = bool(getattr(p, "is_hr_pass", False))
    meta = {}
    prompt = _first(getattr(p, "hr_prompts" if hires else "prompts", None)) or _first(getattr(p, "prompt", None))
    if isinstance(prompt, str) and prompt.strip():
        meta["prompt"] = prompt[:_PROMPT_CHARS]
    model = _checkpoint_name(shared.sd_model)
    if model:
        meta["model"] = model[:_NAME_CHARS]
    seed = _first(getattr(p, "seeds", None))
    seed = seed if seed is not None else getattr(p, "seed", None)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed <= _MAX_SEED:
        meta["seed"] = int(seed)
    name = _sampler_name(p, sampler, hires)
    if name:
        meta["sampler"] = name[:_SAMPLER_CHARS]
    steps = (getattr(p, "hr_second_pass_steps", 0) or getattr(p, "steps", None)) if hires else getattr(p, "steps", None)
    if isinstance(steps, numbers.Integral) and 1 <= steps <= 1_000_000:
        meta["steps"] = int(steps)
    if hires:
        meta["pass"] = "hires"
    elif getattr(p, "enable_hr", False):
        meta["pass"] = "first"
    return meta


def _first(value):
    """A prompt or seed of the webui: one value, or a list of them per image of the batch."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _checkpoint_name(model):
    """The loaded checkpoint's file name without its extension (the webui's CheckpointInfo)."""
    info = getattr(model, "sd_checkpoint_info", None)
    for field in ("name_for_extra", "model_name", "name"):
        value = getattr(info, field, None)
        if isinstance(value, str) and value:
            return value
    return None


def _sampler_name(p, sampler, hires):
    """The sampler running the pass: its own config's name, else the one asked for (the hires one in the hires pass)."""
    name = getattr(getattr(sampler, "config", None), "name", None)
    if not name and hires:
        name = getattr(p, "hr_sampler_name", None)
        if name == "Use same sampler":
            name = None
    name = name or getattr(p, "sampler_name", None)
    return name if isinstance(name, str) else None


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
