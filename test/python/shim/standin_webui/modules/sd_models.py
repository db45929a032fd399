"""modules/sd_models.py: checkpoints and the model swap that fires on_model_loaded (§3, §5)."""

from modules import script_callbacks, shared


class CheckpointInfo:
    def __init__(self, name, build):
        self.name = name
        self.title = name
        self.short_title = name
        self.model_name = name
        # The stand-in's "weights": builds the model object when the checkpoint is loaded.
        self.build = build


checkpoints_list = {}


class SkipWritingToConfig:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    return checkpoints_list.get(search_string) or next((info for info in checkpoints_list.values() if info.name == search_string), None)


def select_checkpoint():
    info = checkpoints_list.get(shared.opts.sd_model_checkpoint)
    return info if info is not None else next(iter(checkpoints_list.values()))


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    checkpoint_info = info or select_checkpoint()
    current = shared.sd_model
    if current is not None and getattr(current, "sd_checkpoint_info", None) is checkpoint_info and not forced_reload:
        return current
    model = checkpoint_info.build()
    model.sd_checkpoint_info = checkpoint_info
    shared.sd_model = model
    script_callbacks.model_loaded_callback(model)
    return model
