"""The extension in the webui: what its script does each time the webui (re)loads the scripts.

The webui clears all callbacks before it (re)loads scripts, so they are registered here, at the
script's import, every time; the function patches survive a reload and are undone on unload.
A webui can end up with two copies of the extension (installed from the Extensions tab and with
`latent-bridge install-extension`): the one loaded second says so and does nothing, since both
would import this same package anyway.
"""

from modules import paths_internal, script_callbacks

from . import autostart, hires, hooks, notices, settings, sidecar, taesd_weights

_loaded_from = None
_viewer_announced = False


def load(extension_dir):
    """Hooks into the webui, registers the callbacks and starts the sidecar if needed."""
    global _loaded_from
    # The same folder again without an unload in between is a reload (hooks.install copes).
    if _loaded_from is not None and _loaded_from != extension_dir:
        notices.warn_once(
            "installed twice",
            f"the extension is installed twice, in {_loaded_from} and in {extension_dir}; the first one is used. "
            "Remove the other one (delete its folder) and restart the webui.",
        )
        return
    _loaded_from = extension_dir
    hooks.install()
    script_callbacks.on_ui_settings(settings.register)
    script_callbacks.on_cfg_denoiser(hires.follow_first_pass_model)
    script_callbacks.on_script_unloaded(unload)
    _announce_viewer()
    # The webui's own TAESD decoders, for the sidecar's TAESD previews (no download needed).
    taesd_weights.convert_in_background(paths_internal.models_path)
    autostart.start_in_background()


def unload():
    """on_script_unloaded: takes every hook out and closes the connection; the scripts' next load
    puts the hooks back, and the first request after it connects anew."""
    global _loaded_from
    hooks.uninstall()
    sidecar.close()
    _loaded_from = None


def _announce_viewer():
    """Says once per webui process where the live previews are."""
    global _viewer_announced
    if _viewer_announced:
        return
    _viewer_announced = True
    url = settings.viewer_url()
    if url is None:
        return
    # The token stays out of the console (logs get pasted into bug reports).
    token_note = " (add ?token=YOUR_TOKEN: the sidecar has a token)" if settings.get(settings.TOKEN) else ""
    print(f"latent-bridge: live previews at {url}{token_note}")
