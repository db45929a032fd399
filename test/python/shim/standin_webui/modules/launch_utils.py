"""modules/launch_utils.py (§1): how the launcher runs each extension's install.py.

As in A1111 1.10.1 (the same code in Forge and reForge): every folder in extensions/ that is not
disabled in config.json gets `"<python>" "<ext>/install.py"` run through the shell, with
PYTHONPATH=<webui root>, its output captured and printed once it is done; a failure is reported
and the start goes on. The webui takes extensions_dir from modules.paths_internal and runs with
its own folder as the working directory; here the folder is an argument, as everywhere in the
stand-in, and the working directory is the stand-in's folder.

Stand-in only: is_installed answers from LAUNCH_INSTALLED (comma separated) and run_pip records
its calls in the file LAUNCH_PIP_LOG, so that a test sees what would have been installed; with
LAUNCH_PIP_FAIL set, run_pip fails as the webui's does when pip fails (run() raising with pip's
stderr, here the variable's value).
"""

import json
import os
import subprocess
import sys

from modules import errors, paths

python = sys.executable


def run(command, desc=None, errdesc=None, custom_env=None, live=False):
    if desc is not None:
        print(desc)
    run_kwargs = {
        "args": command,
        "shell": True,
        "env": os.environ if custom_env is None else custom_env,
        "encoding": "utf8",
        "errors": "ignore",
        "cwd": paths.script_path,
    }
    if not live:
        run_kwargs["stdout"] = run_kwargs["stderr"] = subprocess.PIPE
    result = subprocess.run(**run_kwargs)
    if result.returncode != 0:
        error_bits = [
            f"{errdesc or 'Error running command'}.",
            f"Command: {command}",
            f"Error code: {result.returncode}",
        ]
        if result.stdout:
            error_bits.append(f"stdout: {result.stdout}")
        if result.stderr:
            error_bits.append(f"stderr: {result.stderr}")
        raise RuntimeError("\n".join(error_bits))
    return result.stdout or ""


def is_installed(package):
    return package in os.environ.get("LAUNCH_INSTALLED", "").split(",")


def run_pip(command, desc=None, live=False):
    failure = os.environ.get("LAUNCH_PIP_FAIL")
    if failure:
        raise RuntimeError("\n".join([f"Couldn't install {desc}.", f'Command: "{python}" -m pip {command} --prefer-binary', "Error code: 1", f"stderr: {failure}"]))
    with open(os.environ["LAUNCH_PIP_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{command}\t{desc}\n")


def run_extension_installer(extension_dir):
    path_installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(path_installer):
        return
    try:
        env = os.environ.copy()
        env["PYTHONPATH"] = f"{paths.script_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
        stdout = run(f'"{python}" "{path_installer}"', errdesc=f"Error running install.py for extension {extension_dir}", custom_env=env).strip()
        if stdout:
            print(stdout)
    except Exception as e:
        errors.report(str(e))


def list_extensions(extensions_dir, settings_file):
    settings = {}
    try:
        with open(settings_file, "r", encoding="utf8") as file:
            settings = json.load(file)
    except FileNotFoundError:
        pass
    disabled_extensions = set(settings.get("disabled_extensions", []))
    disable_all_extensions = settings.get("disable_all_extensions", "none")
    if disable_all_extensions != "none" or not os.path.isdir(extensions_dir):
        return []
    return [x for x in os.listdir(extensions_dir) if x not in disabled_extensions]


def run_extensions_installers(extensions_dir, settings_file):
    if not os.path.isdir(extensions_dir):
        return
    for dirname_extension in list_extensions(extensions_dir, settings_file):
        path = os.path.join(extensions_dir, dirname_extension)
        if os.path.isdir(path):
            run_extension_installer(path)
