"""modules/paths_internal.py: where the webui keeps its data; models under `<data_path>/models`
(A1111 1.10.1: `data_path` is --data-dir, the webui root by default; sd_vae_taesd.py reads its
decoders from `os.path.join(paths_internal.models_path, "VAE-taesd", name)`)."""

import os

from modules import paths

data_path = paths.script_path
models_path = os.path.join(data_path, "models")
