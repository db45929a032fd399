"""modules/ui_extensions.py (§1): Extensions -> Install from URL, as the webui does it.

The folder name is the URL's last part without ".git"; the repository is cloned with
`--filter=blob:none` into <data dir>/tmp/<name> (the webui goes through GitPython's
Repo.clone_from, which runs this same git command, then fetches and updates submodules, of
which this repository has none), renamed to extensions/<name>, and the extension's install.py
is run at once through launch.run_extension_installer. The webui's data dir is the folder that
holds extensions/.
"""

import errno
import os
import shutil
import subprocess


def normalize_git_url(url):
    if url is None:
        return ""
    return url.replace(".git", "")


def get_extension_dirname_from_url(url):
    *parts, last_part = url.split("/")
    return normalize_git_url(last_part)


def install_extension_from_url(extensions_dir, dirname, url, branch_name=None):
    url = url.strip()
    assert url, "No URL specified"
    if dirname is None or dirname == "":
        dirname = get_extension_dirname_from_url(url)
    target_dir = os.path.join(extensions_dir, dirname)
    assert not os.path.exists(target_dir), f"Extension directory already exists: {target_dir}"
    tmpdir = os.path.join(os.path.dirname(extensions_dir), "tmp", dirname)
    try:
        shutil.rmtree(tmpdir, True)
        branch = ["--branch", branch_name] if branch_name else []
        subprocess.run(["git", "clone", "--filter=blob:none", *branch, "--", url, tmpdir], check=True, capture_output=True)
        try:
            os.rename(tmpdir, target_dir)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            shutil.move(tmpdir, target_dir)

        import launch

        launch.run_extension_installer(target_dir)
        return f"Installed into {target_dir}. Use Installed tab to restart."
    finally:
        shutil.rmtree(tmpdir, True)
