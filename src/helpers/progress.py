"""Progress bars: a live widget in a notebook, plain text when the lessons are stored with their outputs.

A widget's stored output is only its first frame ("0%"), because the widget's
later state is not part of the text a reader of the saved notebook sees. The
report job sets ``HELPERS_PROGRESS=text``, so bars are printed as text and the
stored lesson shows each bar's last line (see :func:`helpers.lessons.store_lesson`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm as live_bar
from tqdm.std import tqdm as text_bar

__all__ = ["progress_bar"]


def progress_bar(iterable: Any = None, **options: Any) -> Any:
    """``tqdm.auto`` (a widget in Jupyter), or a text bar on stdout when ``HELPERS_PROGRESS=text``."""
    if os.environ.get("HELPERS_PROGRESS") == "text":
        return text_bar(iterable, file=sys.stdout, **options)
    return live_bar(iterable, **options)
