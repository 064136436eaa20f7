"""Optional runtimes and converters: import them, or say in one line which extra installs them.

A missing extra is a user's fix (`pip install 'fercomp[openvino]'`), so it is a ConfigError:
the CLI prints the message on one line and exits 2.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConfigError

# module -> (extra that installs it, what it is for)
EXTRAS = {
    "openvino": ("openvino", "OpenVINO export and runtime"),
    "ai_edge_litert": ("litert", "the LiteRT runtime"),
    "litert_torch": ("litert", "the LiteRT converter"),
    "ncnn": ("ncnn", "the NCNN runtime"),
    "pnnx": ("ncnn", "the NCNN converter (pnnx)"),
}


class MissingExtra(ConfigError):
    """A format's runtime or converter is not installed; the message names the extra."""


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingExtra naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, what = EXTRAS.get(module, (module, module))
        raise MissingExtra(f"{what} needs the {module!r} package, which is not installed here "
                           f"({exc.__class__.__name__}); install it with: pip install 'fercomp[{extra}]'") from None


def available(module: str) -> tuple[bool, str]:
    """(True, "") when `module` imports, else (False, the one-line reason)."""
    try:
        require(module)
    except MissingExtra as exc:
        return False, str(exc)
    return True, ""
