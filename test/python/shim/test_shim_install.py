"""install.py as the webui runs it: through its launcher's installer code (a subprocess with
PYTHONPATH=<webui root>), at every start and right after Extensions -> Install from URL.

The repository is installed the way the Extensions tab does it: a git clone of a repository
that holds this checkout's files as they are now (committed or not), into extensions/ of a
fresh stand-in webui. npm may only use its cache (filled by the project's own `npm ci`):
npm_config_offline=true is npm's own setting, as a user could set it too.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import types
from pathlib import Path

import pytest

from conftest import REPO, SHIM, import_from_extension
from modules import errors, launch_utils, patches, shared, ui_extensions

NODE = shutil.which("node")
NOT_FOUND = (
    "latent-bridge: the sidecar needs Node.js 20 or newer, which was not found (no `node` on PATH). "
    "Install the LTS version from https://nodejs.org (it includes npm) and restart the webui; "
    "until then hires fix and live previews work the webui's own way."
)
BOTH_REQUIREMENTS = "msgpack,websocket-client"


def snapshot_repository(destination):
    """A git repository with this checkout's tracked and not-ignored files as they are on disk."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode("utf-8").split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-c", "init.defaultBranch=main", "-c", "user.name=latent-bridge tests", "-c", "user.email=tests@localhost", "-C", str(destination)]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *command], check=True, capture_output=True)
    return destination


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """Where the Extensions tab clones from (a GitHub URL for users)."""
    return snapshot_repository(tmp_path_factory.mktemp("origin") / "latent-bridge")


def launcher_environment(monkeypatch, tmp_path, path=None, installed=BOTH_REQUIREMENTS, **npm):
    """The webui process's environment: what the stand-in's is_installed/run_pip read, and npm's own settings."""
    log = tmp_path / "pip.log"
    log.touch()
    monkeypatch.setenv("LAUNCH_INSTALLED", installed)
    monkeypatch.setenv("LAUNCH_PIP_LOG", str(log))
    monkeypatch.setenv("npm_config_offline", "true")
    for name, value in npm.items():
        monkeypatch.setenv(f"npm_config_{name}", value)
    if path is not None:
        monkeypatch.setenv("PATH", path)
    return log


def git_only_path(tmp_path):
    """A PATH with git (the Extensions tab needs it) and no Node.js."""
    folder = tmp_path / "git-only"
    folder.mkdir()
    (folder / "git").symlink_to(shutil.which("git"))
    return str(folder)


def install_from_url(webui_dir, origin):
    """Extensions -> Install from URL, and what it printed."""
    extensions = webui_dir / "extensions"
    extensions.mkdir(parents=True, exist_ok=True)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        message = ui_extensions.install_extension_from_url(str(extensions), None, f"file://{origin}")
    assert message.startswith(f"Installed into {extensions / 'latent-bridge'}."), message
    assert errors.reported == [], errors.reported
    return extensions / "latent-bridge", output.getvalue().strip()


def start_launcher(extensions, capsys):
    """The launcher's pass over extensions/ at a webui start, and what it printed."""
    capsys.readouterr()
    launch_utils.run_extensions_installers(str(extensions), str(extensions.parent / "config.json"))
    assert errors.reported == [], errors.reported
    return capsys.readouterr().out.strip()


def installed_tree(extension):
    """What `npm ci` replaces when it runs: node_modules' own record of what it installed."""
    record = (extension / "node_modules" / ".package-lock.json").stat()
    return record.st_ino, record.st_mtime_ns


def lock_digest(extension):
    return hashlib.sha256((extension / "package-lock.json").read_bytes()).hexdigest()


def stamp(extension):
    return (extension / "node_modules" / ".latent-bridge-setup").read_text()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(origin, tmp_path_factory):
    """A fresh stand-in webui with the repository installed from the Extensions tab, npm and all."""
    webui_dir = tmp_path_factory.mktemp("webui")
    errors.reported.clear()
    with pytest.MonkeyPatch.context() as monkeypatch:
        launcher_environment(monkeypatch, webui_dir)
        extension, output = install_from_url(webui_dir, origin)
    status = subprocess.run(["git", "-C", str(extension), "status", "--porcelain"], capture_output=True, text=True, check=True).stdout
    return types.SimpleNamespace(extensions=webui_dir / "extensions", extension=extension, output=output, git_status=status)


@pytest.fixture
def launcher(monkeypatch, tmp_path):
    errors.reported.clear()
    return lambda **environment: launcher_environment(monkeypatch, tmp_path, **environment)


# ---- the repository installed from the Extensions tab --------------------------------------------


def test_install_from_url_sets_up_a_working_sidecar(installed, webui, models_dir, warnings_log):
    extension = installed.extension
    lines = installed.output.splitlines()
    assert lines[0] == f"latent-bridge: setting up the sidecar in {extension} (npm ci --omit=dev --no-audit --no-fund, a minute or two)"
    assert lines[1].startswith(f"latent-bridge: the sidecar is set up ({NODE} v") and len(lines) == 2
    modules = extension / "node_modules"
    assert (modules / "tsx").is_dir() and (modules / "onnxruntime-node").is_dir() and (modules / "ws").is_dir()
    assert not (modules / "vitest").exists() and not (modules / "typescript").exists()  # production packages only
    assert not list(modules.glob("onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda*"))  # no CUDA download
    assert stamp(extension) == lock_digest(extension)
    location = extension / "python-shim" / "sidecar.json"
    assert json.loads(location.read_text()) == {"node": NODE}
    assert installed.git_status == ""  # what it wrote is ignored by git: the Extensions tab can still update it

    # The webui loads the extension from the repository root and autostarts the sidecar there.
    location.write_text(json.dumps({"node": NODE, "serve_args": ["--models", str(models_dir), "--offline"]}))
    webui.extensions_dir = installed.extensions
    port = free_port()
    webui.start("--latent-bridge-url", f"ws://127.0.0.1:{port}/ws")
    assert "latent_bridge" in patches.originals
    assert "Latent (latent-bridge)" in shared.latent_upscale_modes
    autostart = webui.module("autostart")
    assert webui.module("location").EXTENSION_DIR == extension / "python-shim"
    assert autostart.ensure_running(wait=60)
    assert autostart._process.popen.args[:2] == [NODE, str(extension / "bin" / "latent-bridge.js")]
    assert autostart._healthy("127.0.0.1", port, None)  # /healthz answers 200
    p, processed = webui.txt2img("sd15", width=64, height=64, steps=2, enable_hr=True, hr_scale=2.0, hr_upscaler="Latent (latent-bridge)", denoising_strength=0.5)
    assert processed.extra_generation_params["Latent bridge"] == "NN upscale x2"
    assert warnings_log() == []


def test_the_next_start_does_nothing(installed, launcher, capsys):
    launcher()
    before = installed_tree(installed.extension)
    assert start_launcher(installed.extensions, capsys) == ""
    assert installed_tree(installed.extension) == before


def test_a_recorded_node_that_works_is_used_without_a_warning(installed, launcher, tmp_path, capsys):
    launcher(path=git_only_path(tmp_path))
    assert start_launcher(installed.extensions, capsys) == ""


def test_packages_someone_installed_by_hand_are_kept(installed, launcher, capsys):
    """No stamp, but node_modules holds what the lock file asks for (`npm ci` run there by hand)."""
    launcher()
    (installed.extension / "node_modules" / ".latent-bridge-setup").unlink()
    before = installed_tree(installed.extension)
    assert start_launcher(installed.extensions, capsys) == ""
    assert installed_tree(installed.extension) == before
    assert stamp(installed.extension) == lock_digest(installed.extension)


def test_installed_packages_are_checked_against_the_lock_file(installed):
    installer = import_from_extension("latent_bridge_shim.installer")
    lock = json.loads((installed.extension / "package-lock.json").read_text())
    assert installer._installed_match(installed.extension, json.dumps(lock).encode())
    lock["packages"]["node_modules/ws"]["version"] = "8.0.0"
    assert not installer._installed_match(installed.extension, json.dumps(lock).encode())
    lock["packages"]["node_modules/vitest"] = {"version": "0.0.1", "dev": True}  # dev packages are not needed
    del lock["packages"]["node_modules/ws"]
    assert installer._installed_match(installed.extension, json.dumps(lock).encode())


def test_a_changed_lock_file_sets_up_again(installed, launcher, capsys):
    launcher()
    extension = installed.extension
    lock = extension / "package-lock.json"
    lock.write_text(json.dumps(json.loads(lock.read_text()), indent=1) + "\n")  # as a `git pull` brings a new one
    before = installed_tree(extension)
    output = start_launcher(installed.extensions, capsys).splitlines()
    assert output[0].startswith(f"latent-bridge: setting up the sidecar in {extension} ")
    assert output[1].startswith("latent-bridge: the sidecar is set up (")
    assert installed_tree(extension) != before
    assert stamp(extension) == lock_digest(extension)
    assert start_launcher(installed.extensions, capsys) == ""


def test_without_node_it_says_what_to_install_and_the_webui_starts(origin, launcher, webui, tmp_path, capsys):
    launcher(path=git_only_path(tmp_path))
    extension, output = install_from_url(tmp_path / "webui", origin)
    assert output == NOT_FOUND
    assert not (extension / "node_modules").exists()
    # Another extension's install.py still runs, and the webui loads this one.
    other = extension.parent / "other-extension"
    other.mkdir()
    (other / "install.py").write_text("print('other extension: installed')\n")
    output = start_launcher(extension.parent, capsys).splitlines()
    assert sorted(output) == sorted([NOT_FOUND, "other extension: installed"])
    webui.extensions_dir = extension.parent
    webui.start("--latent-bridge-autostart", "off")
    assert "Latent (latent-bridge)" in shared.latent_upscale_modes


def test_node_without_npm_says_what_to_install(origin, launcher, tmp_path):
    """Some Linux distributions package npm apart from Node.js."""
    folder = tmp_path / "node-only"
    folder.mkdir()
    (folder / "node").symlink_to(NODE)
    launcher(path=f"{git_only_path(tmp_path)}{os.pathsep}{folder}")
    extension, output = install_from_url(tmp_path / "webui", origin)
    assert output == (
        f"latent-bridge: npm was not found next to {folder / 'node'} or on PATH, so the sidecar cannot be set up. "
        "Install the LTS version from https://nodejs.org (it includes npm) and restart the webui; "
        "until then hires fix and live previews work the webui's own way."
    )
    assert not (extension / "node_modules").exists()


def test_a_failed_npm_is_one_message_and_is_tried_again(origin, launcher, webui, tmp_path, capsys):
    empty_cache = tmp_path / "npm-cache"
    empty_cache.mkdir()
    launcher(cache=str(empty_cache))  # offline with nothing cached: npm cannot get the packages
    extension, output = install_from_url(tmp_path / "webui", origin)
    failure = re.compile(
        re.escape(f"latent-bridge: `npm ci --omit=dev --no-audit --no-fund` in {extension} failed (exit code ")
        + r"\d+: \S.*\)\. "
        + re.escape("Run it there yourself to see the whole output; the webui starts without the sidecar and tries again at its next start.")
    )
    lines = output.splitlines()
    assert len(lines) == 2 and lines[0].startswith("latent-bridge: setting up the sidecar in ")
    assert failure.fullmatch(lines[1]), lines[1]
    assert not (extension / "node_modules" / ".latent-bridge-setup").exists()
    assert failure.fullmatch(start_launcher(extension.parent, capsys).splitlines()[1])


# ---- python-shim/ as the extension (latent-bridge install-extension) ------------------------------


@pytest.fixture
def shim_copy(tmp_path):
    """python-shim/ copied into extensions/, as `install-extension --copy` does (never the checkout's
    own folder: install.py records Node beside the package)."""
    target = tmp_path / "webui" / "extensions" / "latent-bridge"
    shutil.copytree(SHIM, target, ignore=shutil.ignore_patterns("__pycache__", "sidecar.json"))
    return target


def pip_calls(log):
    return [line.split("\t")[0] for line in log.read_text().splitlines()]


def test_installs_the_python_packages_that_are_missing(shim_copy, launcher, capsys):
    log = launcher(installed="")
    assert start_launcher(shim_copy.parent, capsys) == ""
    assert pip_calls(log) == ["install msgpack", "install websocket-client"]


def test_installs_nothing_when_everything_is_there_and_records_node(shim_copy, launcher, capsys):
    (shim_copy / "sidecar.json").write_text(json.dumps({"serve_args": ["--models", "/data/latents"]}))
    log = launcher()
    assert start_launcher(shim_copy.parent, capsys) == ""
    assert pip_calls(log) == []
    assert json.loads((shim_copy / "sidecar.json").read_text()) == {"serve_args": ["--models", "/data/latents"], "node": NODE}


def test_says_exactly_what_to_install_when_node_is_missing(shim_copy, launcher, tmp_path, capsys):
    launcher(path=git_only_path(tmp_path))
    assert start_launcher(shim_copy.parent, capsys) == NOT_FOUND
    assert not (shim_copy / "sidecar.json").exists()


def test_a_recorded_node_works_without_node_on_path(shim_copy, launcher, tmp_path, capsys):
    (shim_copy / "sidecar.json").write_text(json.dumps({"node": NODE}))
    launcher(path=git_only_path(tmp_path))
    assert start_launcher(shim_copy.parent, capsys) == ""


def test_says_when_node_is_too_old(shim_copy, launcher, tmp_path, capsys):
    fake = tmp_path / "old-node"
    fake.mkdir()
    (fake / "node").write_text("#!/bin/sh\necho v18.19.0\n")
    (fake / "node").chmod(0o755)
    launcher(path=f"{fake}:{os.path.dirname(shutil.which('sh'))}")
    assert start_launcher(shim_copy.parent, capsys) == (
        f"latent-bridge: the sidecar needs Node.js 20 or newer, and {fake / 'node'} is v18.19.0. "
        "Install the LTS version from https://nodejs.org (it includes npm) and restart the webui; "
        "until then hires fix and live previews work the webui's own way."
    )


def test_a_failure_is_one_message_and_the_webui_starts(shim_copy, launcher, monkeypatch, capsys):
    """The webui's run_pip raises when pip fails; install.py says so in one line and exits 0."""
    launcher(installed="")
    monkeypatch.setenv("LAUNCH_PIP_FAIL", "ERROR: No matching distribution found for msgpack")
    assert start_launcher(shim_copy.parent, capsys) == (
        "latent-bridge: installing its Python packages failed (stderr: ERROR: No matching distribution found for msgpack); "
        "the webui starts anyway, and this is tried again at its next start."
    )


# ---- both installs in one webui --------------------------------------------------------------------


def test_installed_twice_loads_once_and_says_so(webui, extensions_dir, warnings_log):
    """From the Extensions tab (the repository root) and with install-extension (python-shim/)."""
    (extensions_dir / "latent-bridge-main").symlink_to(REPO, target_is_directory=True)
    webui.start("--latent-bridge-autostart", "off")
    assert len(patches.originals["latent_bridge"]) == 6  # one install's patches, not two
    assert warnings_log() == [
        f"latent-bridge: the extension is installed twice, in {extensions_dir / 'latent-bridge'} and in {extensions_dir / 'latent-bridge-main'}; "
        "the first one is used. Remove the other one (delete its folder) and restart the webui."
    ]
    webui.reload()
    assert len(warnings_log()) == 1
