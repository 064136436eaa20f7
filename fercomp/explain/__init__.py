"""Explanations (documents 002, 003): Grad-CAM, Grad-CAM++, guided backpropagation, guided Grad-CAM."""
