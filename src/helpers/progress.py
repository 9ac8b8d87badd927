"""Progress bars: a live widget in a notebook, plain text when the lessons are stored with their outputs.

A widget's stored output is only its first frame ("0%"), because the widget's
later state is not part of the text a reader of the saved notebook sees. The
report job sets ``HELPERS_PROGRESS=text``, so bars are printed as text and the
stored lesson shows each bar's last line (see :func:`helpers.lessons.store_lesson`).
That line is committed, so it reads no clock: no elapsed or remaining time, no
rate, no postfix value measured per second.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm as live_bar
from tqdm.std import tqdm as text_bar

__all__ = ["progress_bar"]

TEXT_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}"  # tqdm's own, less "[elapsed<remaining, rate"
RATE_SUFFIX = "per_sec"  # postfix values named so are throughputs (the training loop's tokens_per_sec)


class _TextBar(text_bar):
    """tqdm's text bar whose every line is the same on every run of the same work."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        super().set_postfix({k: v for k, v in values.items() if not k.endswith(RATE_SUFFIX)}, refresh=refresh)


def progress_bar(iterable: Any = None, **options: Any) -> Any:
    """``tqdm.auto`` (a widget in Jupyter), or a clock-free text bar on stdout when ``HELPERS_PROGRESS=text``."""
    if os.environ.get("HELPERS_PROGRESS") == "text":
        return _TextBar(iterable, file=sys.stdout, bar_format=TEXT_FORMAT, **options)
    return live_bar(iterable, **options)
