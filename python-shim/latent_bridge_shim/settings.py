"""The extension's settings: an own section in the Settings tab, overridable from the command line.

Values are read from `opts.data` with a default, never as `opts.<key>`: in API-only mode
(--nowebui) the Settings tab is never built, so the options are never registered and only
what config.json or an API call stored is there.
"""

import html
import urllib.parse

from modules import shared

SECTION = ("latent_bridge", "Latent bridge")

URL = "latent_bridge_url"
TOKEN = "latent_bridge_token"
AUTOSTART = "latent_bridge_autostart"
TIMEOUT = "latent_bridge_timeout"
PREVIEWS = "latent_bridge_previews"
INTERPOSE = "latent_bridge_interpose"
# Not a setting: a line of the section that shows where the live viewer is.
VIEWER = "latent_bridge_viewer"

DEFAULTS = {
    URL: "ws://127.0.0.1:7877/ws",
    TOKEN: "",
    AUTOSTART: True,
    TIMEOUT: 60.0,
    PREVIEWS: True,
    INTERPOSE: True,
}

# Command-line options from preload.py that take precedence over the Settings tab.
_COMMAND_LINE = {URL: "latent_bridge_url", TOKEN: "latent_bridge_token", AUTOSTART: "latent_bridge_autostart"}


def register():
    """on_ui_settings callback: adds the section to the Settings tab."""
    import gradio as gr  # only here: the Settings tab exists only when gradio does

    def option(key, label, component=None, component_args=None):
        return shared.OptionInfo(DEFAULTS[key], label, component, component_args, section=SECTION)

    viewer = shared.OptionHTML(_viewer_html())
    viewer.section = SECTION
    shared.opts.add_option(VIEWER, viewer)
    shared.opts.add_option(URL, option(URL, "Sidecar WebSocket URL").info("ws://host:port/ws of `latent-bridge serve`"))
    shared.opts.add_option(TOKEN, option(TOKEN, "Sidecar token", gr.Textbox, {"type": "password"}).info("needed when the sidecar was started with --token"))
    shared.opts.add_option(AUTOSTART, option(AUTOSTART, "Start the sidecar with Node.js when it is not running").info("only for a URL on this machine"))
    shared.opts.add_option(TIMEOUT, option(TIMEOUT, "Seconds to wait for a hires-fix conversion", gr.Number).info("after that the webui's own latent resize is used"))
    shared.opts.add_option(PREVIEWS, option(PREVIEWS, "Send every sampling step to the sidecar's live viewer"))
    shared.opts.add_option(INTERPOSE, option(INTERPOSE, "Convert latents when the hires checkpoint is of another family (SDXL -> SD1.5 ...)"))


def get(key):
    """The current value of one setting: command line first, then the stored settings, then the default."""
    attribute = _COMMAND_LINE.get(key)
    if attribute is not None:
        value = getattr(shared.cmd_opts, attribute, None)
        if value is not None:
            return _parse_switch(value) if key == AUTOSTART else value
    value = shared.opts.data.get(key, DEFAULTS[key])
    return DEFAULTS[key] if value is None else value


def viewer_url():
    """The sidecar's viewer page for the configured URL (ws://h:p/ws -> http://h:p/), or None.

    Never with the token, whatever the URL holds: a link on the Settings page or in the console
    would show it to anyone who sees those. The user adds ?token= to the address.
    """
    parts = urllib.parse.urlsplit(str(get(URL)).strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return None
    if scheme is None or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    path = parts.path[: -len("ws")] if parts.path.endswith("/ws") else "/"
    return urllib.parse.urlunsplit((scheme, host if port is None else f"{host}:{port}", path, "", ""))


def _viewer_html():
    url = viewer_url()
    if url is None:
        return "Live viewer: none, the sidecar URL below is not a ws:// or wss:// URL."
    link = f"<a href='{html.escape(url, quote=True)}' target='_blank'>{html.escape(url)}</a>"
    note = " (the sidecar has a token: add <code>?token=</code> and the token below to the address)" if get(TOKEN) else ""
    return f"Live viewer, previews of every step: {link}{note}. A new URL shows here after Reload UI."


def timeout():
    try:
        value = float(get(TIMEOUT))
    except (TypeError, ValueError):
        return DEFAULTS[TIMEOUT]
    return value if value > 0 else DEFAULTS[TIMEOUT]


def _parse_switch(value):
    return str(value).lower() in ("1", "on", "true", "yes")
