"""modules/images.py: save_image writes a file in the webui; the stand-in keeps what would be saved."""

saved = []


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, short_filename=False, no_prompt=False, grid=False, pnginfo_section_name="parameters", p=None, existing_info=None, forced_filename=None, suffix="", save_to_dirs=None):
    saved.append((image, suffix))
