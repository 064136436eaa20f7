"""Make fercomp's optional-extra check see some packages as not installed (for 'names the extra' tests)."""

from __future__ import annotations

from fercomp.deploy import extras


def hide_modules(monkeypatch, *names: str) -> None:
    real_import = extras.importlib.import_module

    def without(name, *args, **kwargs):
        if name in names:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(extras.importlib, "import_module", without)
