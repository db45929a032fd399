"""install.py as the webui's launcher runs it: a subprocess with PYTHONPATH=<webui root>."""

import os
import shutil
import subprocess
import sys

from conftest import SHIM, STANDIN


def run_installer(tmp_path, installed, path):
    log = tmp_path / "pip.log"
    log.touch()
    env = dict(os.environ, PYTHONPATH=str(STANDIN), LAUNCH_INSTALLED=",".join(installed), LAUNCH_PIP_LOG=str(log), PATH=path)
    result = subprocess.run([sys.executable, str(SHIM / "install.py")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout, log.read_text().splitlines()


def test_installs_what_is_missing(tmp_path):
    stdout, pip = run_installer(tmp_path, [], os.environ["PATH"])
    assert [line.split("\t")[0] for line in pip] == ["install msgpack", "install websocket-client"]
    assert "Node.js was not found" not in stdout


def test_installs_nothing_when_everything_is_there(tmp_path):
    stdout, pip = run_installer(tmp_path, ["msgpack", "websocket-client"], os.environ["PATH"])
    assert pip == []
    assert stdout == ""


def test_says_when_node_is_missing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    stdout, _ = run_installer(tmp_path, ["msgpack", "websocket-client"], str(empty))
    assert "Node.js was not found on PATH" in stdout and "https://nodejs.org" in stdout


def test_says_when_node_is_too_old(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    node = fake / "node"
    node.write_text("#!/bin/sh\necho v18.19.0\n")
    node.chmod(0o755)
    stdout, _ = run_installer(tmp_path, ["msgpack", "websocket-client"], f"{fake}:{os.path.dirname(shutil.which('sh'))}")
    assert "needs Node.js 20 or newer" in stdout and "v18.19.0" in stdout
