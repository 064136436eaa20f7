"""Models for 48x48 grayscale faces: one registry, `create(name, num_classes, **options)`.

Every model takes a [B, 1, 48, 48] normalised grayscale batch and returns [B, num_classes]
logits; it carries `input_size`, `in_chans`, `default_cfg` (training defaults), `model_name`,
`model_kwargs` and `get_classifier()` (the final Linear, which pruning leaves alone).

    >>> from fercomp.models import create, list_models, model_summary
    >>> model = create("separable_cnn", num_classes=7)
"""

# Importing the architecture modules registers their models.
from . import cnn, se_resnet, separable, transfer  # noqa: F401
from .profile import count_macs, count_params, model_summary
from .registry import (
    create,
    default_cfg,
    list_models,
    model_description,
    model_family,
    model_options,
    register_model,
)
from .reshape import fit_to_state_dict

__all__ = [
    "count_macs",
    "count_params",
    "create",
    "default_cfg",
    "fit_to_state_dict",
    "list_models",
    "model_description",
    "model_family",
    "model_options",
    "model_summary",
    "register_model",
]
