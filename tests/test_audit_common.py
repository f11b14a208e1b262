"""stages.audit_common: the base model's control measurement is computed once per base and
handed out as copies; models with another base, or another kind, get their own."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from psmlab.config import build_config
from psmlab.stages.audit_common import base_control, stage_name


def _job(run: Any, kind: str, model: str) -> Any:
    stage = SimpleNamespace(model_input=model, kind=kind, name=stage_name(kind, model))
    return SimpleNamespace(stage=stage, run=run, cfg=build_config("smoke", name="a"))


def test_base_control_is_computed_once_per_base(smoke_run) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def compute(tag: str) -> Any:
        def run() -> dict[str, Any]:
            calls.append(tag)
            return {"rate": 0.5, "items": [1, 2]}

        return run

    first = base_control(_job(smoke_run, "probe-kind", "align-rlhf"), "p", compute("rlhf"))
    again = base_control(_job(smoke_run, "probe-kind", "align-dpo"), "p", compute("dpo"))
    assert calls == ["rlhf"] and first == again
    again["items"].append(3)  # a copy: one stage cannot change what the next one gets
    assert base_control(_job(smoke_run, "probe-kind", "align-cai"), "p", compute("cai")) == first
    # the filtered reference has its own base; another kind or part is another measurement
    base_control(_job(smoke_run, "probe-kind", "align-filtered"), "p", compute("filtered"))
    base_control(_job(smoke_run, "other-kind", "align-rlhf"), "p", compute("other"))
    base_control(_job(smoke_run, "probe-kind", "align-rlhf"), "q", compute("part"))
    assert calls == ["rlhf", "filtered", "other", "part"]
