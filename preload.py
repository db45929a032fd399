"""The webui calls preload(parser) before it parses its command line; when the repository itself
is the extension (Extensions -> Install from URL), this hands over to python-shim/preload.py."""

import importlib.util
import os

_SHIM_PRELOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python-shim", "preload.py")


def preload(parser):
    spec = importlib.util.spec_from_file_location("latent_bridge_preload", _SHIM_PRELOAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.preload(parser)
