"""Helpers for the Story-Based QA GPT course: data, model, training, evaluation, figures.

Heavy libraries (torch, transformers, datasets, openai) are imported inside the
functions that need them, so ``import helpers`` stays fast and works anywhere.
"""

__version__ = "0.1.0"
