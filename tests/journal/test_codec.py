"""Event payloads: every event and task spec reads back equal to what was written."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.journal.codec import decode_event, decode_spec, encode_event, encode_spec
from dyntaskmas.observe.events import (
    ContextDelivered,
    Event,
    GraphChanged,
    LLMCallFinished,
    LLMCallRetried,
    MonitorSample,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

PLAN = TaskSpec(
    id="t.2.plan",
    description="Split the survey",
    role="planner",
    kind="plan",
    tags=frozenset({"survey", "split"}),
    depth=1,
    parent="t",
    meta={"name": "t.2", "target": "t.2", "inherit": ("t.1",), "nested": {"k": [1, ("a",)]}},
)


def test_spec_meta_tuples_read_back_as_tuples() -> None:
    decoded = decode_spec(json.loads(json.dumps(encode_spec(PLAN))))
    assert decoded == PLAN
    assert isinstance(decoded.meta["inherit"], tuple)


@pytest.mark.parametrize(
    "event",
    [
        RunStarted("r", 0.0, "the request", 4),
        GraphChanged("r", 0.1, (PLAN,), (("t.1", "t.2.plan"), ("x", "y")), ("z",), "why"),
        TaskReady("r", 0.2, "a", 1.5),
        TaskStarted("r", 0.3, "a", "worker-1", "scripted"),
        TaskFinished("r", 0.4, "a", "worker-1", "the output", 0.1, 10, 20),
        TaskFailed("r", 0.5, "b", "boom", ("c", "d")),
        RunFinished("r", 0.6, "failed", 0.6, 3),
        TaskCancelled("r", 0.5, "c", "dependency 'b' failed"),
        ContextDelivered("r", 0.7, "e", ("a",), ("b", "c"), 120, 4000),
        LLMCallFinished(
            "r",
            0.9,
            "e",
            "worker-1",
            "scripted",
            "m",
            0.7,
            0.2,
            30,
            5,
            2,
            (("system", "be brief"), ("user", "a <b> & \u2028 c")),
        ),
        LLMCallRetried("r", 0.9, "e", "worker-1", "scripted", 1),
    ],
    ids=lambda event: type(event).__name__,
)
def test_event_reads_back_equal(event: Event) -> None:
    payload = json.loads(json.dumps(encode_event(event)))
    decoded = decode_event(type(event).__name__, event.run_id, event.at_s, payload)
    assert decoded == event


def test_unknown_event_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        decode_event("TaskTeleported", "r", 0.0, {})


def test_sample_from_older_journal_without_ttft() -> None:
    sample = MonitorSample("r", 1.0, "e", 4, 2, 0, 10, 1.5, 30.0, 0.4, 0.9, 0.0, 0.1, 3)
    payload = json.loads(json.dumps(encode_event(sample)))
    del payload["ttft_p50_s"], payload["ttft_p95_s"]

    decoded = decode_event("MonitorSample", "r", 1.0, payload)

    assert decoded == sample
    assert isinstance(decoded, MonitorSample)
    assert decoded.ttft_p50_s is None


def test_missing_required_field_still_raises() -> None:
    payload = json.loads(json.dumps(encode_event(RunFinished("r", 2.0, "succeeded", 2.0, 3))))
    del payload["llm_calls"]

    with pytest.raises(KeyError, match="llm_calls"):
        decode_event("RunFinished", "r", 2.0, payload)
