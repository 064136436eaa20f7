"""Data: load FER2013 (csv, npz, image folders) or synthetic faces, augment, balance, inspect."""

from .augment import AUGMENT_PRESETS, Augmenter
from .balance import balanced_sampler_indices, class_weights
from .class_map import parse_class_map
from .classes import CLASS_NAMES
from .dataset import FerData, Split
from .info import data_info, render_data_info
from .sources import load_data
from .splits import stratified_split
from .synthetic import make_synthetic, synthetic_data

__all__ = [
    "AUGMENT_PRESETS",
    "Augmenter",
    "CLASS_NAMES",
    "FerData",
    "Split",
    "balanced_sampler_indices",
    "class_weights",
    "data_info",
    "load_data",
    "make_synthetic",
    "parse_class_map",
    "render_data_info",
    "stratified_split",
    "synthetic_data",
]
