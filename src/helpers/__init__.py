"""Helpers for the Story-Based QA GPT course: data, model, training, evaluation, figures.

Each module owns one concern (the README's "How the package is laid out"
lists them); ``import helpers`` itself loads nothing but this line, and each
``helpers.<module>`` imports what it needs.
"""

__version__ = "0.1.0"
