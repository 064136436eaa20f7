"""fercomp: train, compress, export and benchmark facial-emotion-recognition models for the edge."""

__version__ = "0.1.0"
