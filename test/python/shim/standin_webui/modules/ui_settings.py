"""modules/ui_settings.py (§4): the component the Settings tab builds for one option.

As in A1111 1.10.1: the value shown is the stored one, else the option's default (an OptionHTML
is never stored, so its text always comes from the option registered last); the component is
the option's own, else one chosen by the default's type. The rows, groups and refresh buttons
around it are left out.
"""

import gradio as gr

from modules.shared import opts


def create_setting_component(key, is_quicksettings=False):
    def fun():
        return opts.data[key] if key in opts.data else opts.data_labels[key].default

    info = opts.data_labels[key]
    t = type(info.default)
    args = info.component_args() if callable(info.component_args) else info.component_args
    if info.component is not None:
        comp = info.component
    elif t == str:
        comp = gr.Textbox
    elif t == int:
        comp = gr.Number
    elif t == bool:
        comp = gr.Checkbox
    else:
        raise Exception(f"bad options item type: {t} for key {key}")
    elem_id = f"setting_{key}"
    return comp(label=info.label, value=fun(), elem_id=elem_id, **(args or {}))
