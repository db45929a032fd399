"""Loading the extension the way the webui does: preload options, settings, hooks, Reload UI."""

from modules import patches, processing, script_callbacks, sd_samplers_common, shared

HOOKED = [
    (processing.StableDiffusionProcessingTxt2Img, "sample"),
    (processing.StableDiffusionProcessingTxt2Img, "sample_hr_pass"),
    (sd_samplers_common.Sampler, "launch_sampling"),
    (sd_samplers_common, "store_latent"),
    (sd_samplers_common, "samples_to_images_tensor"),
]
ORIGINALS = {field: getattr(obj, field) for obj, field in HOOKED}


def wrapper_depth(function):
    depth = 0
    while hasattr(function, "__wrapped__"):
        depth += 1
        function = function.__wrapped__
    return depth, function


def test_loads_like_an_extension_and_adds_its_choices(webui):
    webui.start("--latent-bridge-autostart", "off")
    for obj, field in HOOKED:
        assert wrapper_depth(getattr(obj, field)) == (1, ORIGINALS[field])
    assert shared.latent_upscale_modes["Latent (latent-bridge)"] == {"mode": "bilinear", "antialias": False}
    assert "Latent bridge" in shared.opts.data_labels["show_progress_type"].component_args["choices"]
    assert "Latent bridge" in sd_samplers_common.approximation_indexes
    assert len(set(sd_samplers_common.approximation_indexes.values())) == len(sd_samplers_common.approximation_indexes)


def test_settings_tab_section_and_command_line_overrides(webui):
    webui.start("--latent-bridge-url", "ws://127.0.0.1:9999/ws", "--latent-bridge-token", "s3cret", "--latent-bridge-autostart", "off")
    settings = webui.module("settings")
    labels = shared.opts.data_labels
    for key in (settings.URL, settings.TOKEN, settings.AUTOSTART, settings.TIMEOUT, settings.PREVIEWS, settings.INTERPOSE):
        assert labels[key].section == ("latent_bridge", "Latent bridge")
    shared.opts.data[settings.URL] = "ws://127.0.0.1:1111/ws"
    assert settings.get(settings.URL) == "ws://127.0.0.1:9999/ws"
    assert settings.get(settings.TOKEN) == "s3cret"
    assert settings.get(settings.AUTOSTART) is False
    assert settings.get(settings.PREVIEWS) is True


def test_api_only_mode_reads_settings_without_the_settings_tab(webui):
    webui.start("--latent-bridge-autostart", "off", settings_tab=False)
    settings = webui.module("settings")
    assert settings.URL not in shared.opts.data_labels
    assert settings.get(settings.URL) == "ws://127.0.0.1:7877/ws"
    assert settings.timeout() == 60.0
    shared.opts.data[settings.TIMEOUT] = 2.5  # stored by config.json or an API call
    assert settings.timeout() == 2.5


def test_reload_ui_twice_leaves_exactly_one_wrapper(webui):
    webui.start("--latent-bridge-autostart", "off")
    webui.reload()
    webui.reload()
    for obj, field in HOOKED:
        assert wrapper_depth(getattr(obj, field)) == (1, ORIGINALS[field]), field
    assert list(shared.latent_upscale_modes).count("Latent (latent-bridge)") == 1
    assert shared.opts.data_labels["show_progress_type"].component_args["choices"].count("Latent bridge") == 1
    assert len(script_callbacks.callback_map["callbacks_script_unloaded"]) == 1
    assert len(patches.originals["latent_bridge"]) == len(HOOKED) + 1  # and the preview method radio


def test_preview_method_choice_when_the_webui_gives_the_radio_a_function(webui):
    """Options may give component_args as a function (called when the Settings tab is built), as
    many of the webui's own do; the choice is added then, and unloading puts the function back."""
    info = shared.opts.data_labels["show_progress_type"]
    info.component_args = lambda: {"choices": ["Approx NN", "Approx cheap", "TAESD"]}
    original = info.component_args
    webui.start("--latent-bridge-autostart", "off")
    assert callable(info.component_args)
    assert info.component_args()["choices"] == ["Approx NN", "Approx cheap", "TAESD", "Latent bridge", "Latent bridge (TAESD)"]
    webui.reload()
    assert info.component_args()["choices"].count("Latent bridge") == 1
    script_callbacks.script_unloaded_callback()
    assert info.component_args is original


def test_unloading_takes_everything_out(webui):
    radio_args = shared.opts.data_labels["show_progress_type"].component_args
    webui.start("--latent-bridge-autostart", "off")
    script_callbacks.script_unloaded_callback()
    assert shared.opts.data_labels["show_progress_type"].component_args is radio_args
    for obj, field in HOOKED:
        assert getattr(obj, field) is ORIGINALS[field]
    assert "Latent (latent-bridge)" not in shared.latent_upscale_modes
    assert "Latent bridge" not in sd_samplers_common.approximation_indexes
    assert "Latent bridge" not in shared.opts.data_labels["show_progress_type"].component_args["choices"]


def test_a_missed_unload_still_leaves_one_wrapper(webui):
    """Should the unload callback not run, loading again replaces the patch instead of stacking (or raising)."""
    webui.start("--latent-bridge-autostart", "off")
    script_callbacks.clear_callbacks()
    webui.start("--latent-bridge-autostart", "off")
    for obj, field in HOOKED:
        assert wrapper_depth(getattr(obj, field)) == (1, ORIGINALS[field])


def test_without_the_sidecar_nothing_changes_for_plain_generations(webui, warnings_log):
    """No sidecar configured anywhere reachable, plain txt2img: same result as without the extension."""
    webui.start("--latent-bridge-autostart", "off", "--latent-bridge-url", "ws://127.0.0.1:9/ws")
    shared.opts.data["latent_bridge_previews"] = False
    p, with_extension = webui.txt2img(steps=4, width=64, height=64)
    script_callbacks.script_unloaded_callback()
    p, without = webui.txt2img(steps=4, width=64, height=64)
    assert with_extension.latents.equal(without.latents)
    assert "Latent bridge" not in with_extension.extra_generation_params
    assert warnings_log() == []


def test_reload_ui_closes_the_connection_and_the_next_request_opens_a_new_one(webui, sidecar):
    webui.start("--latent-bridge-url", sidecar.url, "--latent-bridge-autostart", "off")
    first = webui.module("sidecar").client()
    assert first.request("models", {}, 10)["ok"]
    webui.reload()
    # Unloading the scripts closed it: nothing of the old extension keeps a socket open.
    assert first._closed and first._ws is None
    second = webui.module("sidecar").client()
    assert second is not first and second.request("models", {}, 10)["ok"]
