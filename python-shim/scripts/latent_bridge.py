"""latent-bridge: neural latent upscaling and cross-family conversion in hires fix, live previews
every step, served by the latent-bridge sidecar (Node.js). The work is in latent_bridge_shim/.

The webui clears all callbacks before it (re)loads scripts, so they are registered here, at
import, every time; the function patches survive a reload and are undone on unload.
"""

from modules import script_callbacks

from latent_bridge_shim import autostart, hires, hooks, settings

hooks.install()
script_callbacks.on_ui_settings(settings.register)
script_callbacks.on_cfg_denoiser(hires.follow_first_pass_model)
script_callbacks.on_script_unloaded(hooks.uninstall)
autostart.start_in_background()
