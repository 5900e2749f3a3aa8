"""Optional dependencies (runtimes, plotting, datasets): imported where needed, with an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from efficientformer.errors import MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """Import an optional package, or raise an error that says which extra installs it.

        ort = require("onnxruntime", "onnx")

    Raises:
        MissingDependencyError: the module is not installed (an ImportError, so `except ImportError` works).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"{module} is not installed ({error}); install it with "
                                     f"pip install 'efficientformer[{extra}]'") from None


__all__ = ["require"]
