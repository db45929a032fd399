"""modules/scripts.py (§1, §2): Script, AlwaysVisible, basedir and load_scripts as the webui runs them."""

import os
import sys
from collections import namedtuple

from modules import errors, paths, script_callbacks, script_loading

AlwaysVisible = object()


class Script:
    name = None
    section = None
    filename = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError()

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        pass


ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])

scripts_data = []
current_basedir = paths.script_path


def basedir():
    """The folder of the extension whose script is being imported (only then)."""
    return current_basedir


def list_scripts(extensions_dir):
    """<extension>/scripts/*.py for each extension folder in sorted order, not recursive."""
    found = []
    for dirname in sorted(os.listdir(extensions_dir)):
        base = os.path.join(extensions_dir, dirname)
        scripts_dir = os.path.join(base, "scripts")
        if not os.path.isdir(scripts_dir):
            continue
        for filename in sorted(os.listdir(scripts_dir)):
            path = os.path.join(scripts_dir, filename)
            if filename.endswith(".py") and os.path.isfile(path):
                found.append(ScriptFile(base, filename, path))
    return found


def load_scripts(extensions_dir):
    global current_basedir
    scripts_data.clear()
    script_callbacks.clear_callbacks()

    syspath = sys.path

    def register_scripts_from_module(module):
        for script_class in module.__dict__.values():
            if not isinstance(script_class, type):
                continue
            if issubclass(script_class, Script) and script_class is not Script:
                scripts_data.append(ScriptClassData(script_class, scriptfile.path, scriptfile.basedir, module))

    for scriptfile in list_scripts(extensions_dir):
        try:
            if scriptfile.basedir != paths.script_path:
                sys.path = [scriptfile.basedir] + sys.path
            current_basedir = scriptfile.basedir
            script_module = script_loading.load_module(scriptfile.path)
            register_scripts_from_module(script_module)
        except Exception:
            errors.report(f"Error loading script: {scriptfile.filename}", exc_info=True)
        finally:
            sys.path = syspath
            current_basedir = paths.script_path
