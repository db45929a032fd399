"""modules/patches.py (§11): replaces a module's or class's function and remembers the original per key."""

from collections import defaultdict


def patch(key, obj, field, replacement):
    """Replaces obj.field; raises RuntimeError if this key already patched it. Returns the original."""
    patch_key = (obj, field)
    if patch_key in originals[key]:
        raise RuntimeError(f"patch for {field} is already applied")
    original_func = getattr(obj, field)
    originals[key][patch_key] = original_func
    setattr(obj, field, replacement)
    return original_func


def undo(key, obj, field):
    """Restores obj.field; raises RuntimeError if there is nothing to undo."""
    patch_key = (obj, field)
    if patch_key not in originals[key]:
        raise RuntimeError(f"there is no patch for {field} to undo")
    original_func = originals[key].pop(patch_key)
    setattr(obj, field, original_func)


def original(key, obj, field):
    """The original that patch() stored, or None."""
    return originals[key].get((obj, field), None)


originals = defaultdict(dict)
