"""torch.hub entry points: `torch.hub.load(checkout_dir, "s0", source="local", pretrained=True)`.

One entry per registered model, under its full name and its short alias (s0, s1, s2, l). Keyword
arguments go to `efficientformer.create_model` (pretrained, num_classes, img_size, features_only, ...).
"""

import os
import sys

dependencies = ["torch", "numpy", "safetensors"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)  # a checkout works without installing the package

import efficientformer  # noqa: E402


def _entry(name):
    def build(pretrained=False, **kwargs):
        return efficientformer.create_model(name, pretrained=pretrained or None, **kwargs)

    build.__name__ = name
    build.__doc__ = (f"{name}: `efficientformer.create_model({name!r}, **kwargs)`; pretrained=True loads "
                     f"its default weights, or pass a weight tag or a checkpoint path.")
    return build


for _name in efficientformer.list_models():
    globals()[_name] = _entry(_name)
    globals()[_name.removeprefix("efficientformerv2_")] = _entry(_name)
del _name
