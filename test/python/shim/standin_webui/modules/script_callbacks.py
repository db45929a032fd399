"""modules/script_callbacks.py (§3): the callbacks the extension and the tests use, as the webui runs them."""

import inspect
from collections import namedtuple

from modules import errors

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


callback_map = dict(
    callbacks_app_started=[],
    callbacks_model_loaded=[],
    callbacks_ui_settings=[],
    callbacks_cfg_denoiser=[],
    callbacks_before_reload=[],
    callbacks_script_unloaded=[],
)


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()


def _run(name, *args):
    for c in callback_map[name]:
        try:
            c.callback(*args)
        except Exception:
            errors.report(f"Error executing callback {c.callback} for {c.script}", exc_info=True)


def app_reload_callback():
    _run("callbacks_before_reload")


def model_loaded_callback(sd_model):
    _run("callbacks_model_loaded", sd_model)


def ui_settings_callback():
    _run("callbacks_ui_settings")


def cfg_denoiser_callback(params):
    _run("callbacks_cfg_denoiser", params)


def script_unloaded_callback():
    for c in reversed(callback_map["callbacks_script_unloaded"]):
        try:
            c.callback()
        except Exception:
            errors.report(f"Error executing callback {c.callback} for {c.script}", exc_info=True)


def add_callback(callbacks, fun, *, name=None):
    stack = [x for x in inspect.stack() if x.filename != __file__]
    filename = stack[0].filename if stack else "unknown file"
    callbacks.append(ScriptCallback(filename, fun, name))


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name)


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name)


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name)


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name)


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_before_reload"], callback, name=name)


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name)
