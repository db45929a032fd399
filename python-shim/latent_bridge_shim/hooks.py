"""Where the extension hooks into the webui, and how every hook is taken out again.

Functions are replaced through the webui's own `modules.patches`, which remembers originals
across "Reload UI" (the `modules` package is never reloaded, the extension's script is). The
script calls `install()` each time it is loaded and `uninstall()` from on_script_unloaded, so
there is exactly one wrapper however often the UI is reloaded; `install()` also takes out a
leftover patch first, in case an unload was missed.
"""

import functools

from modules import patches, processing, sd_samplers_common, shared

from . import hires, notices, previews, taesd

KEY = "latent_bridge"

_Txt2Img = processing.StableDiffusionProcessingTxt2Img
_PREVIEW_OPTION = "show_progress_type"
# The live preview methods the extension adds, each with what makes its pictures.
_METHODS = {previews.METHOD: previews.images, taesd.METHOD: previews.taesd_images}


def install():
    for obj, field, make_wrapper in _functions():
        _patch(obj, field, _keeping_identity(make_wrapper))
    # A latent upscale mode shows up in the hires upscaler list, the API and the X/Y/Z grid.
    shared.latent_upscale_modes[hires.MODE_NAME] = hires.MODE
    indexes = sd_samplers_common.approximation_indexes
    for method in _METHODS:
        if method not in indexes:
            indexes[method] = max(indexes.values(), default=0) + 1
    info = shared.opts.data_labels.get(_PREVIEW_OPTION)
    if info is not None:
        _patch(info, "component_args", _with_preview_method)


def uninstall():
    patched = [(obj, field) for obj, field, _ in _functions()]
    info = shared.opts.data_labels.get(_PREVIEW_OPTION)
    if info is not None:
        patched.append((info, "component_args"))
    for obj, field in patched:
        if patches.original(KEY, obj, field) is not None:
            patches.undo(KEY, obj, field)
    shared.latent_upscale_modes.pop(hires.MODE_NAME, None)
    for method in _METHODS:
        sd_samplers_common.approximation_indexes.pop(method, None)
    taesd.forget()


def _functions():
    """(owner, name, wrapper maker) of each webui function the extension wraps."""
    return (
        (_Txt2Img, "sample", _wrap_sample),
        (_Txt2Img, "sample_hr_pass", _wrap_sample_hr_pass),
        (sd_samplers_common.Sampler, "launch_sampling", _wrap_launch_sampling),
        (sd_samplers_common, "store_latent", _wrap_store_latent),
        (sd_samplers_common, "samples_to_images_tensor", _wrap_samples_to_images_tensor),
    )


def _patch(obj, field, make_replacement):
    if patches.original(KEY, obj, field) is not None:
        patches.undo(KEY, obj, field)
    patches.patch(KEY, obj, field, make_replacement(getattr(obj, field)))


def _keeping_identity(make_wrapper):
    """The wrapper keeps the original's name and docstring, and points back to it (__wrapped__)."""
    return lambda original: functools.wraps(original)(make_wrapper(original))


def _with_preview_method(component_args):
    """The "Live preview method" radio's arguments with the extension's methods among the choices.

    The settings tab builds the radio from `component_args`, which the webui allows to be a dict
    or a function returning one (called each time the tab is built); either form is kept.
    """
    def add(args):
        choices = list(args.get("choices") or ())
        choices += [method for method in _METHODS if method not in choices]
        return dict(args, choices=choices)

    if callable(component_args):
        return lambda: add(component_args())
    return add(component_args or {})


def _wrap_sample(original):
    def sample(self, *args, **kwargs):
        hires.remember_first_pass_family(self)
        return original(self, *args, **kwargs)

    return sample


def _wrap_sample_hr_pass(original):
    def sample_hr_pass(self, samples, decoded_samples, *args, **kwargs):
        return hires.sample_hr_pass(original, self, samples, decoded_samples, *args, **kwargs)

    return sample_hr_pass


def _wrap_launch_sampling(original):
    """Every sampling pass (txt2img, its hires pass, img2img) runs through Sampler.launch_sampling,
    which returns early, without an exception, when the user interrupts or skips."""

    def launch_sampling(self, steps, func):
        _guarded(previews.begin_pass, self)
        try:
            result = original(self, steps, func)
        except BaseException as error:
            _guarded(previews.end_pass, error)
            raise
        _guarded(previews.end_pass)
        return result

    return launch_sampling


def _guarded(function, *args):
    """Runs a preview hook; a preview must never cost the image."""
    try:
        function(*args)
    except Exception as error:
        notices.warn_once("internal:previews", f"per-step previews failed and are skipped: {error!r}")


def _wrap_store_latent(original):
    def store_latent(decoded):
        original(decoded)
        _guarded(previews.send_step, decoded)

    return store_latent


def _wrap_samples_to_images_tensor(original):
    def samples_to_images_tensor(sample, approximation=None, *args, **kwargs):
        indexes = sd_samplers_common.approximation_indexes
        for method, make_pictures in _METHODS.items():
            if not previews.wants_method(approximation, indexes.get(method), method):
                continue
            try:
                pictures = make_pictures(sample)
            except Exception as error:  # a preview must never cost the image
                notices.warn_once(f"internal:method:{method}", f"the {method} preview failed: {error!r}")
                pictures = None
            if pictures is not None:
                return pictures
            approximation = indexes.get(previews.FALLBACK_METHOD, 2)
            break
        return original(sample, approximation, *args, **kwargs)

    return samples_to_images_tensor
