"""What several commands share, defined once: options (`device: Device = None` in a signature) and parsers.

The command modules (cli.py, cli_search.py, cli_gan.py, cli_explain.py) import this one; it imports none of them."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from .errors import ConfigError

DATA_HELP = "fer2013.csv, an .npz, an image folder, or 'synthetic' (default: synthetic faces)"

Device = Annotated[Optional[str], typer.Option(
    "--device", help="auto | cpu | cuda | cuda:N | mps (default auto: CUDA, then MPS, else CPU)")]
Amp = Annotated[Optional[str], typer.Option(
    "--amp", help="mixed precision: bf16 | fp16 | off (default: bf16 on a GPU that has it, else off)")]


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """--model-arg width=32 --model-arg dropout=0.3 --model-arg channels=64,128,320
    -> {'width': 32, 'dropout': 0.3, 'channels': [64, 128, 320]} (JSON values; a bare comma list of
    integers is a list too, since that is how people type one in a shell)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-arg expects KEY=VALUE (got {item!r})")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parts = raw.split(",")
            is_int_list = len(parts) > 1 and all(p.strip().lstrip("-").isdigit() for p in parts)
            out[key.strip()] = [int(p) for p in parts] if is_int_list else raw
    return out
