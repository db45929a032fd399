"""Stand-in for webui.py: start-up and "Reload UI" in the webui's order (§1)."""

from modules import cmd_args, script_callbacks, script_loading, scripts, shared


def initialize(extensions_dir, argv=()):
    """Parses the command line with every extension's preload options, then loads the scripts."""
    parser = cmd_args.make_parser()
    script_loading.preload_extensions(extensions_dir, parser)
    shared.cmd_opts = parser.parse_args(list(argv))
    scripts.load_scripts(extensions_dir)

def build_settings_ui():
    """What the Settings tab does while the UI is built (ui_settings.py:102-103); skipped with --nowebui."""
    script_callbacks.ui_settings_callback()

def reload_ui(extensions_dir):
    """webui.py:149-153: app_reload_callback, script_unloaded_callback, initialize_rest(reload_script_modules=True);
    then the webui's loop builds the UI again, the Settings tab with it."""
    script_callbacks.app_reload_callback()
    script_callbacks.script_unloaded_callback()
    scripts.load_scripts(extensions_dir)
    build_settings_ui()

