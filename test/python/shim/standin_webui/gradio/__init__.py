"""Stand-in for gradio: settings only need the component classes to exist."""


class _Component:
    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs


class Radio(_Component):
    pass


class Number(_Component):
    pass


class Textbox(_Component):
    pass


class Checkbox(_Component):
    pass


class Slider(_Component):
    pass


class HTML(_Component):
    pass
