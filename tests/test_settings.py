"""Each option's default is in the option table and nowhere else; the runner's slice of it."""

from __future__ import annotations

import json
from dataclasses import fields

from pytest_llmregress.settings import OPTIONS, RunnerSettings, Settings, resolve_settings


def test_settings_has_one_field_per_option_and_takes_its_defaults_from_the_table() -> None:
    assert [f.name for f in fields(Settings) if f.name != "sources"] == [o.name for o in OPTIONS]
    defaults = Settings.defaults()
    assert {o.name: getattr(defaults, o.name) for o in OPTIONS} == {
        o.name: o.default for o in OPTIONS
    }
    # Nothing given anywhere resolves to the same settings, every one from "default".
    resolved = resolve_settings({}, {}, {})
    assert resolved == defaults
    assert set(resolved.sources.values()) == {"default"}
    assert Settings.defaults(concurrency=3).concurrency == 3


def test_the_runner_slice_is_built_from_the_settings_and_crosses_as_json() -> None:
    settings = Settings.defaults(
        concurrency=3,
        judge_concurrency=2,
        timeout=7.5,
        retries=1,
        rate_limit_wait=12.0,
        case_deadline=30.0,
        cache="record",
        judge_cache="off",
        record="missing",
        params={"temperature": 0, "max_tokens": 64},
        judge_params={"temperature": None},
        openai_extra_params=("top_k",),
        repeat=5,
        judge_repeat=3,
        judge_panel="majority",
        judge_order_sample=0.25,
        max_cost=2.5,
        batch=True,
        batch_poll=2.0,
        batch_failed="online",
        resume="run.json",
    )
    slice_ = RunnerSettings.of(settings, batch_journal="run.json.partial/batches.jsonl")
    assert slice_ == RunnerSettings(
        concurrency=3,
        judge_concurrency=2,
        timeout=7.5,
        retries=1,
        rate_limit_wait=12.0,
        case_deadline=30.0,
        cache_mode="record",
        judge_cache=False,
        record="missing",
        params={"temperature": 0, "max_tokens": 64},
        judge_params={"temperature": None},
        openai_extra_params=("top_k",),
        repeat=5,
        judge_repeat=3,
        judge_panel="majority",
        judge_order_sample=0.25,
        max_cost=2.5,
        batch=True,
        batch_poll=2.0,
        batch_failed="online",
        batch_journal="run.json.partial/batches.jsonl",
        batch_resume=True,
    )
    assert RunnerSettings.from_json(json.loads(json.dumps(slice_.to_json()))) == slice_


def test_the_runner_slice_defaults_are_the_tables() -> None:
    by_name = {o.name: o.default for o in OPTIONS}
    defaults = RunnerSettings.defaults(retries=0)
    assert defaults.retries == 0
    assert defaults.concurrency == by_name["concurrency"]
    assert defaults.timeout == by_name["timeout"]
    assert defaults.rate_limit_wait == by_name["rate_limit_wait"]
    assert defaults.cache_mode == by_name["cache"]
    assert defaults.judge_cache is (by_name["judge_cache"] == "on")
    assert defaults == RunnerSettings.of(Settings.defaults(retries=0))
