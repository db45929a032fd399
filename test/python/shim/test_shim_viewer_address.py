"""Where the live viewer is: a line in Settings -> Latent bridge, and one console line at start."""

import gradio

from modules import shared, ui_settings


def viewer_line(webui):
    settings = webui.module("settings")
    section = [key for key, info in shared.opts.data_labels.items() if info.section == settings.SECTION]
    assert section[0] == settings.VIEWER  # at the top of the section
    component = ui_settings.create_setting_component(settings.VIEWER)
    assert isinstance(component, gradio.HTML)
    return component.kwargs["value"]


def test_the_settings_section_links_to_the_viewer(webui):
    webui.start("--latent-bridge-url", "ws://127.0.0.1:9911/ws", "--latent-bridge-autostart", "off")
    line = viewer_line(webui)
    assert "<a href='http://127.0.0.1:9911/' target='_blank'>http://127.0.0.1:9911/</a>" in line
    assert "token" not in line
    assert webui.module("settings").VIEWER not in shared.opts.data  # shown, never saved


def test_with_a_token_the_link_leaves_it_out_and_says_how_to_add_it(webui):
    webui.start("--latent-bridge-url", "wss://sidecar.example:8443/bridge/ws?token=in-the-url", "--latent-bridge-token", "s3cret-t0ken", "--latent-bridge-autostart", "off")
    line = viewer_line(webui)
    assert "<a href='https://sidecar.example:8443/bridge/' target='_blank'>" in line
    assert "s3cret-t0ken" not in line and "in-the-url" not in line
    assert "add <code>?token=</code> and the token below to the address" in line


def test_a_new_url_shows_after_reload_ui(webui):
    webui.start("--latent-bridge-autostart", "off")
    assert "http://127.0.0.1:7877/" in viewer_line(webui)
    shared.opts.data["latent_bridge_url"] = "ws://localhost:7000/ws"
    webui.reload()
    assert "http://localhost:7000/" in viewer_line(webui)


def test_a_url_that_is_no_websocket_url_gets_no_link(webui):
    webui.start("--latent-bridge-url", "http://127.0.0.1:7877/ws", "--latent-bridge-autostart", "off")
    assert viewer_line(webui) == "Live viewer: none, the sidecar URL below is not a ws:// or wss:// URL."


def test_the_console_says_where_the_viewer_is_once(webui, capsys):
    webui.start("--latent-bridge-url", "ws://[::1]:9912/ws", "--latent-bridge-autostart", "off")
    webui.reload()
    assert capsys.readouterr().out.splitlines() == ["latent-bridge: live previews at http://[::1]:9912/"]


def test_the_console_line_never_shows_the_token(webui, capsys):
    webui.start("--latent-bridge-token", "s3cret-t0ken", "--latent-bridge-autostart", "off")
    assert capsys.readouterr().out.splitlines() == ["latent-bridge: live previews at http://127.0.0.1:7877/ (add ?token=YOUR_TOKEN: the sidecar has a token)"]
