"""modules/paths.py: the webui's own folder; extension scripts live elsewhere."""

import os

script_path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
