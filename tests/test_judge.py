"""Tests for helpers.judge against a real HTTP server speaking the OpenAI chat API.

No client is mocked: a scripted server on 127.0.0.1 answers
``POST /v1/chat/completions`` and the real ``openai`` client reaches it through
``OPENAI_BASE_URL``. Each completion carries a ``[case=NAME]`` marker that
tells the server how to behave (grade normally, rate-limit once, fail, stall,
reply with prose). The server checks every request's shape and records what it
saw: attempt counts and times, in-flight peaks, Authorization headers.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import judge
from helpers.judge import (
    ASSESSMENT_REQUEST,
    EXERCISE_INTRO,
    GRADING_REQUEST,
    Grade,
    build_conversation,
    grade,
    judge_available,
    judge_many,
    parse_grades,
    summarise,
)
from helpers.markdown import grades_table

MODEL = "gpt-3.5-turbo"
FAKE_KEY = "-".join(["sk", "test", "CANARY", "7f3a9c1e5b", "DO", "NOT", "LEAK"])  # a canary, joined so it reads as no key
from conftest import PAPER as REFERENCE

# The grading reply printed in the paper's transcript (GPT-3.5's second turn).
PAPER_REPLY = """I would rate the student's completion as follows: Grammar: 2/10 - The completion contains several grammatical errors and incomplete sentences, making it challenging to understand.

Creativity: 2/10 - While the student introduces new elements like poems, love books, and a cat, these additions do not fit well with the beginning of the story and do not contribute to a coherent narrative.

Consistency with the story's beginning: 1/10 - The completion is highly inconsistent with the beginning of the story. It introduces new characters and concepts that were not mentioned initially.

Plot coherence: 1/10 - The plot in the completion does not make sense and lacks a clear storyline. It does not build upon the beginning of the story or provide a meaningful continuation.

Based on the completion and the writing style, it's challenging to pinpoint the exact age of the student, but it appears to reflect a very young writer, possibly in the age group A or B (3 or under or 4-5 years old). The language and narrative structure suggest a lack of developed writing skills and an understanding of story coherence."""

GARBLED_REPLY = "What a lovely little story! I enjoyed reading it very much."


def _grades_reply(grammar: int) -> str:
    return (
        f"Grammar: {grammar}/10 - mostly fine.\n"
        "Creativity: 7/10\n"
        "Consistency with the story's beginning: 8/10\n"
        "Plot coherence: 6/10\n"
        "Age group: C (6-7)"
    )


# --- The scripted server ---------------------------------------------------------------


@dataclass
class StubState:
    """What the server was told to do and what it saw."""

    model: str = MODEL
    # how to answer a completion without a [case=NAME] marker (a model's own text): a case, or a function
    # from the exercise's text to a case
    default_case: str | Callable[[str], str] | None = None
    delay: float = 0.0  # seconds every normal reply waits
    stall: float = 1.5  # seconds a "slow" reply waits, longer than the client timeout
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0
    attempts: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    in_flight: int = 0
    max_in_flight: int = 0
    authorizations: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)

    def count(self, case: str, turn: int) -> int:
        return len(self.attempts[(case, turn)])


def _check_request(state: StubState, body: Any) -> tuple[str, int] | str:
    """The (case, turn) of a well-formed request, or a description of what is wrong."""
    if not isinstance(body, dict) or body.get("model") != state.model:
        return f"bad model: {body.get('model') if isinstance(body, dict) else body!r}"
    if body.get("temperature") != 0:
        return f"temperature is {body.get('temperature')!r}, expected 0"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages missing"
    roles = [m.get("role") for m in messages]
    first = messages[0].get("content", "")
    if not (first.startswith(EXERCISE_INTRO) and first.endswith(ASSESSMENT_REQUEST) and "***" in first):
        return "first user turn is not the exercise"
    found = re.search(r"\[case=([\w-]+)\]", first)
    if found is None and state.default_case is None:
        return "no case marker"
    case = found.group(1) if found else state.default_case
    if callable(case):
        case = case(first)
    if roles == ["user"]:
        return case, 1
    if roles == ["user", "assistant", "user"]:
        if messages[1].get("content") != _assessment(case):
            return "assistant turn is not the server's own assessment"
        if messages[2].get("content") != GRADING_REQUEST:
            return "second user turn is not the grading request"
        return case, 2
    return f"unexpected turn structure {roles}"


def _assessment(case: str) -> str:
    return f"Assessment ({case}): the completion is grammatical and follows the beginning."


def _make_handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self._done()  # before the reply leaves: once it has, the client may send its next request
            self.end_headers()
            self.wfile.write(data)

        def _done(self) -> None:
            """This request no longer counts as in flight (once, whichever way it ends)."""
            if self._counted:
                self._counted = False
                with state.lock:
                    state.in_flight -= 1

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": "stub_error", "code": None}}, headers)

        def _reply(self, content: str) -> None:
            self._send(
                200,
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": state.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                },
            )

        def do_POST(self) -> None:
            with state.lock:
                state.requests += 1
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.authorizations.add(self.headers.get("Authorization", ""))
            self._counted = True
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a stalled reply
            finally:
                self._done()

        def _handle(self) -> None:
            if self.path != "/v1/chat/completions":
                state.violations.append(f"unexpected path {self.path}")
                return self._error(404, "not found")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            checked = _check_request(state, body)
            if isinstance(checked, str):
                state.violations.append(checked)
                return self._error(400, checked)
            case, turn = checked
            with state.lock:
                state.attempts[(case, turn)].append(time.monotonic())
                attempt = len(state.attempts[(case, turn)])

            if case == "error500":
                return self._error(500, "scripted failure")
            if case == "ratelimit" and turn == 1 and attempt == 1:
                return self._error(429, "slow down", {"Retry-After": "0"})
            if case == "slow" or (case == "slow-once" and turn == 1 and attempt == 1):
                state.release.wait(state.stall)
            elif state.delay:
                state.release.wait(state.delay)

            if turn == 1:
                return self._reply(_assessment(case))
            if case == "paper":
                return self._reply(PAPER_REPLY)
            if case == "garbled":
                return self._reply(GARBLED_REPLY)
            grammar = int(case.split("-")[1]) if case.startswith("ok-") else 9
            return self._reply(_grades_reply(grammar))

    return Handler


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StubState) -> None:
        super().__init__(("127.0.0.1", 0), _make_handler(state))
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.state.server_errors.append(repr(error))


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A running stub server; the environment points the openai client at it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_LOG", raising=False)
    state = StubState()
    server = _StubServer(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ordinary-key")
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert state.violations == []
    assert state.server_errors == []


def _item(case: str) -> tuple[str, str]:
    return ("Once upon a time, Lily found a red ball. She", f" picked it up and smiled. [case={case}]")


# --- The prompt ----------------------------------------------------------------------


def test_conversation_is_the_papers_first_turn() -> None:
    messages = build_conversation("Tom had a dog. The dog", " ran fast.")
    assert [m["role"] for m in messages] == ["user"]
    assert messages[0]["content"] == (
        EXERCISE_INTRO + "\n\nTom had a dog. The dog*** ran fast.\n\n" + ASSESSMENT_REQUEST
    )


@pytest.mark.skipif(not REFERENCE.exists(), reason="paper text not available")
def test_prompt_texts_are_quoted_from_the_paper() -> None:
    paper = " ".join(REFERENCE.read_text(encoding="utf-8").split())
    for text in (EXERCISE_INTRO, ASSESSMENT_REQUEST, GRADING_REQUEST):
        assert text in paper


def test_module_imports_without_openai() -> None:
    code = "import sys, helpers.judge; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- Parsing ---------------------------------------------------------------------------


def test_parse_the_papers_example_reply() -> None:
    assert parse_grades(PAPER_REPLY) == {
        "grammar": 2.0,
        "creativity": 2.0,
        "consistency": 1.0,
        "plot": 1.0,
        "age_group": "A/B",
        "parsed": True,
    }


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("Grammar: 7/10", "grammar", 7.0),
        ("Grammar - 7 / 10", "grammar", 7.0),
        ("**Grammar**: 7 out of 10", "grammar", 7.0),
        ("Grammatical correctness: 8.5/10", "grammar", 8.5),
        ("1. Creativity: 4/10 - some new ideas", "creativity", 4.0),
        ("Consistency with the story's beginning: 1/10", "consistency", 1.0),
        ("Plot coherence: 1/10", "plot", 1.0),
        ("Plot: 6/10", "plot", 6.0),
        ("Whether the plot makes sense: 5 out of 10.", "plot", 5.0),
        ("Grammar: 7\n", "grammar", 7.0),
        ("Grammar: N/A, Creativity: 7/10", "grammar", None),
        ("Grammar: 12/10", "grammar", None),
        ("Grammar: the text has 3 errors.", "grammar", None),
    ],
)
def test_parse_score_formats(text: str, name: str, value: float | None) -> None:
    assert parse_grades(text)[name] == value


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("Age group: C (6-7)", "C"),
        ("Estimated age group: **D** (8-9)", "D"),
        ("The writer is probably 4-5 years old (age group B).", "B"),
        ("Age group: C or D.", "C/D"),
        ("Age: A young child could have written this.", None),
        ("Possible age groups: A: 3 or under. B: 4-5. C: 6-7. D: 8-9.\nMy guess: C", None),
    ],
)
def test_parse_age_group(text: str, age: str | None) -> None:
    assert parse_grades(text)["age_group"] == age


def test_unparseable_text_gives_no_scores() -> None:
    assert parse_grades(GARBLED_REPLY) == {
        "grammar": None,
        "creativity": None,
        "consistency": None,
        "plot": None,
        "age_group": None,
        "parsed": False,
    }


# --- Judging over HTTP -----------------------------------------------------------------


def test_normal_grades(stub: StubState) -> None:
    results = judge_many([_item("ok-8"), _item("paper")], model=MODEL)
    assert results[0] == Grade(
        grammar=8.0,
        creativity=7.0,
        consistency=8.0,
        plot=6.0,
        age_group="C",
        assessment=_assessment("ok-8"),
        raw=_grades_reply(8),
        parsed=True,
        error=None,
    )
    paper = results[1]
    assert (paper.grammar, paper.creativity, paper.consistency, paper.plot) == (2.0, 2.0, 1.0, 1.0)
    assert paper.age_group == "A/B" and paper.parsed and paper.raw == PAPER_REPLY
    assert stub.requests == 4
    assert stub.count("ok-8", 1) == stub.count("ok-8", 2) == 1


def test_rate_limit_is_retried(stub: StubState) -> None:
    (result,) = judge_many([_item("ratelimit")], model=MODEL, max_retries=2)
    assert stub.count("ratelimit", 1) == 2  # the 429, then the retry
    assert stub.count("ratelimit", 2) == 1
    assert result.error is None and result.parsed and result.grammar == 9.0


def test_persistent_server_error_backs_off_then_fails(stub: StubState) -> None:
    items = [_item("ok-3"), _item("error500"), _item("ok-5")]
    results = judge_many(items, model=MODEL, max_retries=2)
    failed = results[1]
    assert failed.error == "InternalServerError (HTTP 500)"
    assert failed.parsed is False and failed.raw is None and failed.assessment is None
    assert all(getattr(failed, name) is None for name in judge.SCORE_NAMES)
    assert [results[0].grammar, results[2].grammar] == [3.0, 5.0]
    times = stub.attempts[("error500", 1)]
    assert len(times) == 3  # first try and two retries
    first_wait, second_wait = times[1] - times[0], times[2] - times[1]
    assert first_wait >= 0.3 and second_wait > first_wait  # exponential backoff


def test_failures_are_not_cached(stub: StubState, tmp_path: Path) -> None:
    (result,) = judge_many([_item("error500")], model=MODEL, max_retries=0, cache_dir=tmp_path)
    assert result.error is not None
    assert list(tmp_path.iterdir()) == []


def test_stalled_reply_times_out_and_is_retried(stub: StubState) -> None:
    (result,) = judge_many([_item("slow-once")], model=MODEL, timeout=0.4, max_retries=1)
    assert stub.count("slow-once", 1) == 2
    assert result.error is None and result.parsed


def test_persistent_stall_gives_timeout_error(stub: StubState) -> None:
    results = judge_many([_item("slow"), _item("ok-4")], model=MODEL, timeout=0.4, max_retries=1)
    assert stub.count("slow", 1) == 2
    assert results[0].error == "APITimeoutError" and results[0].grammar is None
    assert results[1].grammar == 4.0


def test_unparseable_reply_is_kept(stub: StubState) -> None:
    (result,) = judge_many([_item("garbled")], model=MODEL)
    assert result.parsed is False and result.error is None
    assert result.raw == GARBLED_REPLY and result.assessment == _assessment("garbled")
    assert all(getattr(result, name) is None for name in judge.SCORE_NAMES)


def test_cache_makes_a_rerun_free(stub: StubState, tmp_path: Path) -> None:
    items = [_item("ok-1"), _item("ok-2"), _item("paper")]
    first = judge_many(items, model=MODEL, cache_dir=tmp_path)
    assert stub.requests == 6
    files = sorted(tmp_path.iterdir())
    assert len(files) == 6
    assert all(re.fullmatch(r"[0-9a-f]{64}\.json", f.name) for f in files)
    record = json.loads(files[0].read_text(encoding="utf-8"))
    assert set(record) == {"model", "messages", "reply"}

    second = judge_many(items, model=MODEL, cache_dir=tmp_path)
    assert stub.requests == 6
    assert second == first


def test_concurrency_is_bounded_and_order_kept(stub: StubState) -> None:
    stub.delay = 0.05
    items = [_item(f"ok-{i % 11}") for i in range(12)]
    results = judge_many(items, model=MODEL, concurrency=3)
    assert [r.grammar for r in results] == [float(i % 11) for i in range(12)]
    assert 2 <= stub.max_in_flight <= 3


def test_skip_without_environment(stub: StubState, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert judge_available() is False
    assert judge_many([_item("ok-1")]) == []
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "skipped" in lines[0] and "OPENAI_API_KEY" in lines[0] and "OPENAI_BASE_URL" in lines[0]
    assert grade(*_item("ok-1")) is None
    assert stub.requests == 0


def test_base_url_alone_uses_a_placeholder_key(stub: StubState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = grade(*_item("ok-6"), model=MODEL)
    assert result is not None and result.grammar == 6.0
    (authorization,) = stub.authorizations
    assert authorization.startswith("Bearer ") and len(authorization) > len("Bearer ")


def test_api_key_never_leaks(
    stub: StubState, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any, caplog: Any
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    items = [_item("ok-7"), _item("error500"), _item("garbled"), _item("slow")]
    results = judge_many(items, model=MODEL, cache_dir=tmp_path, timeout=0.4, max_retries=1)
    assert stub.authorizations == {f"Bearer {FAKE_KEY}"}  # the key really was used
    assert [r.error is None for r in results] == [True, False, True, False]

    written = "".join(f.read_text(encoding="utf-8") for f in tmp_path.iterdir())
    captured = capsys.readouterr()
    shown = [repr(results), str(results), grades_table(results), repr(summarise(results))]
    for text in (written, captured.out, captured.err, caplog.text, *shown):
        assert FAKE_KEY not in text
    assert "judge request failed" in caplog.text  # the failures were logged, without the key


# --- Reporting -------------------------------------------------------------------------


def test_summary_and_table() -> None:
    grades = [
        Grade(grammar=8, creativity=6, consistency=7, plot=5, age_group="C", parsed=True),
        Grade(grammar=6, creativity=4, consistency=9, plot=7, age_group="A/B", parsed=True),
        Grade(raw="no numbers here"),
        Grade(error="InternalServerError (HTTP 500)"),
    ]
    assert summarise(grades) == {
        "grammar": 7.0,
        "creativity": 5.0,
        "consistency": 8.0,
        "plot": 6.0,
        "n_items": 4,
        "n_parsed": 2,
        "n_failed": 1,
    }
    table = grades_table(grades).splitlines()
    assert len(table) == 2 + 4 + 1
    assert table[2] == "| 1 | 8 | 6 | 7 | 5 | C | ok |"
    assert "unparsed" in table[4] and "InternalServerError" in table[5]
    assert table[-1].startswith("| **mean** | 7.00 | 5.00 | 8.00 | 6.00 |")
    assert "2 of 4 parsed" in table[-1]


def test_summary_of_nothing_parsed() -> None:
    summary = summarise([Grade(raw="?")])
    assert summary["grammar"] is None and summary["n_parsed"] == 0
