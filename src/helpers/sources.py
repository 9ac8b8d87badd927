"""Where text comes from: the embedded stories, the Hugging Face hub, or local files, checked record by record.

Stories come from the embedded procedural corpus (offline, the default), from
the hub (``roneneldan/TinyStories``) or from a local file: the original
``TinyStories-*.txt`` layout (stories separated by ``<|endoftext|>`` lines) or
``.json``/``.jsonl``/``.parquet`` rows with a ``text`` field. Instructions
come from the embedded story questions, the hub (``tatsu-lab/alpaca``) or a
local ``alpaca_data.json``. A bad file raises :class:`DataError` naming the
file and the record.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .config import DataConfig
from .hub import hub_unreachable
from .stories import corpus, iter_corpus, qa_records

__all__ = [
    "DataError",
    "EOT",
    "read_story_file",
    "read_instruction_file",
    "validate_instruction",
    "is_file_source",
    "HUB_DATASETS",
    "check_hub_sources",
    "load_stories",
    "load_instructions",
    "story_questions",
    "held_out_questions",
    "SAMPLES",
    "paper_data_source",
]

EOT = "<|endoftext|>"  # GPT-2's end-of-text token, also the story separator of TinyStories' text files


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and record."""


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise DataError(f"{what} file {str(path)!r} does not exist")
    if not path.is_file():
        raise DataError(f"{what} path {str(path)!r} is not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{what} file {str(path)!r} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{what} file {str(path)!r} is not UTF-8 text: byte 0x{raw[err.start]:02x} "
            f"at offset {err.start} (line {line})"
        ) from None


def _json_error(path: Path, err: json.JSONDecodeError, line_offset: int = 0) -> DataError:
    return DataError(
        f"{str(path)!r} is not valid JSON: {err.msg} at line {err.lineno + line_offset} column {err.colno}"
    )


def read_story_file(path: str | Path) -> list[str]:
    """Stories from a local TinyStories file (.txt, .json, .jsonl or .parquet).

    In ``.txt`` files stories are separated by ``<|endoftext|>`` lines; a
    ``.txt`` without any separator (such as a ``datasets`` export) is split at
    blank lines instead.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if not path.exists():
            raise DataError(f"stories file {str(path)!r} does not exist")
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise DataError(f"{str(path)!r} has no 'text' column (columns: {table.column_names})")
        rows = table.column("text").to_pylist()
        stories = [_story_field(path, i, {"text": r}) for i, r in enumerate(rows)]
    elif suffix == ".jsonl":
        text = _read_text(path, "stories")
        stories = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise _json_error(path, err, line_offset=number - 1) from None
            stories.append(_story_field(path, number, record, unit="line"))
    elif suffix == ".json":
        stories = [_story_field(path, i, r) for i, r in enumerate(_json_list(path, "stories"))]
    elif suffix == ".txt":
        text = _read_text(path, "stories").replace("\r\n", "\n")
        if EOT in text:
            pieces = [p.strip() for p in text.split(EOT)]
        else:
            pieces = [p.strip() for p in text.split("\n\n")]
        stories = [p for p in pieces if p]
    else:
        raise DataError(f"stories file {str(path)!r}: unsupported type {suffix or '(none)'}; "
                        "use .txt, .json, .jsonl or .parquet")
    stories = [s for s in stories if s.strip()]
    if not stories:
        raise DataError(f"stories file {str(path)!r} holds no stories")
    return stories


def _json_list(path: Path, what: str) -> list[Any]:
    """The JSON list a ``.json`` file holds, or one error naming the file (and where its syntax breaks)."""
    try:
        records = json.loads(_read_text(path, what))
    except json.JSONDecodeError as err:
        raise _json_error(path, err) from None
    if not isinstance(records, list):
        raise DataError(f"{str(path)!r} must hold a JSON list of records, got {type(records).__name__}")
    return records


def _story_field(path: Path, index: int, record: Any, unit: str = "record") -> str:
    if not isinstance(record, dict) or "text" not in record:
        raise DataError(f"{str(path)!r} {unit} {index}: expected an object with a 'text' field")
    if not isinstance(record["text"], str):
        raise DataError(f"{str(path)!r} {unit} {index}: 'text' must be a string, "
                        f"got {type(record['text']).__name__}")
    return record["text"]


def read_instruction_file(path: str | Path) -> list[dict[str, str]]:
    """Records of a local ``alpaca_data.json`` (a JSON list of instruction/input/output)."""
    path = Path(path).expanduser()
    records = _json_list(path, "instructions")
    if not records:
        raise DataError(f"{str(path)!r} holds no records")
    return [validate_instruction(r, f"{str(path)!r} record {i}") for i, r in enumerate(records)]


def validate_instruction(record: Any, where: str) -> dict[str, str]:
    """Check one Alpaca record: ``instruction`` and ``output`` strings, optional ``input``."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}")
    for key in ("instruction", "output"):
        if key not in record:
            raise DataError(f"{where} has no {key!r} field")
    clean = {}
    for key in ("instruction", "input", "output"):
        value = record.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        clean[key] = value
    if not clean["instruction"].strip():
        raise DataError(f"{where}: 'instruction' is empty")
    for key, value in record.items():
        if key not in clean:
            clean[key] = value
    return clean


# ------------------------------------------------------------------ sources


def is_file_source(source: str) -> bool:
    """A data source that names a local file (not ``"embedded"`` or ``"hub"``)."""
    return source not in {"embedded", "hub"}


def load_stories(cfg: DataConfig, split: str) -> list[str]:
    """Story texts of ``split`` ("train" or "validation") from the configured source."""
    if split not in {"train", "validation"}:
        raise DataError(f"unknown split {split!r}; use 'train' or 'validation'")
    limit = cfg.train_stories if split == "train" else cfg.val_stories_count
    if cfg.stories == "embedded":
        count = limit if limit is not None else (100_000 if split == "train" else 2_000)
        return [s.text for s in corpus(split, count, seed=cfg.corpus_seed)]
    if cfg.stories == "hub":
        check_hub_sources(cfg, ["stories"])
        return _hub_texts(HUB_DATASETS["stories"], split, limit)
    if split == "validation" and cfg.val_stories:
        stories = read_story_file(cfg.val_stories)
    else:
        stories = read_story_file(cfg.stories)
        if not cfg.val_stories:  # hold out the last share of the file
            n_val = max(1, round(len(stories) * cfg.val_fraction))
            if len(stories) < 2:
                raise DataError(f"stories file {cfg.stories!r} needs at least 2 stories to hold one out")
            stories = stories[-n_val:] if split == "validation" else stories[:-n_val]
    return stories[:limit] if limit is not None else stories


HUB_DATASETS = {"stories": "roneneldan/TinyStories", "instructions": "tatsu-lab/alpaca"}
_LOCAL_FORMS = {
    "stories": "a TinyStories .txt file (stories separated by <|endoftext|> lines) or a .json/.jsonl/.parquet "
               "file with a 'text' field",
    "instructions": "an alpaca_data.json file (a JSON list of instruction/input/output records)",
}


def check_hub_sources(cfg: DataConfig, which: Sequence[str] = ("stories", "instructions")) -> None:
    """Stop at once, in one message, when a source is ``"hub"`` and the hub does not answer.

    Names the local-file settings (and the lessons' parameters) to use
    instead. With ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set the hub is
    not asked: the ``datasets`` cache is expected to hold the data.
    """
    needed = [key for key in which if getattr(cfg, key) == "hub"]
    offline = any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not needed or offline:
        return
    problem = hub_unreachable()
    if problem is None:
        return
    alternatives = "; ".join(f"--set data.{key}=PATH for {_LOCAL_FORMS[key]} (a notebook's parameter {key}=...)"
                             for key in needed)
    raise DataError(f"data.{' and data.'.join(needed)}='hub' needs the Hugging Face hub "
                    f"({', '.join(HUB_DATASETS[k] for k in needed)}), which is unreachable: {problem}. "
                    f"Without the hub, use local files: {alternatives}")


def _hub_texts(name: str, split: str, limit: int | None) -> list[str]:
    from datasets import load_dataset  # optional: only hub data needs it

    if limit is not None:  # stream only what is needed
        rows = load_dataset(name, split=split, streaming=True)
        return [row["text"] for _, row in zip(range(limit), rows)]
    return list(load_dataset(name, split=split)["text"])


def load_instructions(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """Train and validation instruction records.

    Embedded: questions about training-split stories for training, about
    validation-split stories for validation (no story is in both). Alpaca
    (hub or file): a seeded shuffle, then ``instruction_val_fraction`` held
    out, as the paper split 1/10 off for validation.
    """
    if cfg.instructions == "embedded":
        n_train = cfg.instruction_limit or 20_000
        n_val = max(1, round(n_train * cfg.instruction_val_fraction))
        return (story_questions("train", n_train, cfg.corpus_seed, cfg.yes_no_fact),
                story_questions("validation", n_val, cfg.corpus_seed, cfg.yes_no_fact))
    if cfg.instructions == "hub":
        from datasets import load_dataset  # optional: only hub data needs it

        check_hub_sources(cfg, ["instructions"])
        rows = load_dataset(HUB_DATASETS["instructions"], split="train")
        records = [validate_instruction(dict(r), f"tatsu-lab/alpaca record {i}") for i, r in enumerate(rows)]
    else:
        records = read_instruction_file(cfg.instructions)
    order = list(range(len(records)))
    random.Random(cfg.corpus_seed).shuffle(order)
    records = [records[i] for i in order]
    if cfg.instruction_limit is not None:
        records = records[: cfg.instruction_limit]
    if len(records) < 2:
        raise DataError(f"instructions {cfg.instructions!r}: need at least 2 records to hold one out")
    n_val = max(1, round(len(records) * cfg.instruction_val_fraction))
    return records[n_val:], records[:n_val]


# A real sample of each of the paper's datasets ships with the package (samples/README.md: licences, sources).
SAMPLES = {
    "stories": Path(__file__).parent / "samples" / "TinyStories-train.first-1000.txt",
    "instructions": Path(__file__).parent / "samples" / "alpaca_data.first335.json",
}


def paper_data_source(cfg: DataConfig, which: str) -> tuple[DataConfig, str]:
    """``cfg`` reading the paper's ``which`` data ("stories" or "instructions"), and a line saying from where.

    A local file or the hub when it answers; otherwise the shipped sample of
    the same dataset, so that a lesson measures real data offline too.
    """
    if which not in SAMPLES:
        raise DataError(f"unknown dataset {which!r}; use 'stories' or 'instructions'")
    source = getattr(cfg, which)
    if source == "hub":
        problem = hub_unreachable()
        if problem is None:
            return cfg, f"{HUB_DATASETS[which]} from the Hugging Face hub"
        sample = SAMPLES[which]
        return (replace(cfg, **{which: str(sample)}),
                f"the sample shipped with the package ({sample.name}), because the hub is out of reach: {problem}")
    if source == "embedded":
        raise DataError(f"data.{which}='embedded' is the course's own corpus, not the paper's data")
    return cfg, f"the local file {source}"


def held_out_questions(stories: int, seed: int = 0, yes_no_fact: str = "none") -> list[dict]:
    """Every question about the first ``stories`` validation stories (none of them is trained on); ``yes_no_fact``
    as :func:`helpers.stories.qa_records` takes it."""
    return [record for story in corpus("validation", stories, seed=seed) for record in qa_records(story, yes_no_fact)]


def story_questions(split: str, n: int, seed: int, yes_no_fact: str = "none") -> list[dict]:
    """The first ``n`` question records about stories of ``split``, story by story (``yes_no_fact``: how yes/no
    answers are written, :func:`helpers.stories.qa_records`)."""
    if n <= 0:
        return []
    out: list[dict] = []
    for story in iter_corpus(split, seed=seed):
        out.extend(qa_records(story, yes_no_fact))
        if len(out) >= n:
            break
    return out[:n]
