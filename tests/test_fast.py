"""fast.auto: the fastest settings by measurement, per machine and shape, measured once."""

from __future__ import annotations

import pytest

from unet_transfer.training import fast
from unet_transfer.training.fast import FastSettings, choose


@pytest.fixture(autouse=True)
def own_choices_file(monkeypatch, tmp_path):
    """These tests record made-up timings: in a file of their own, never the session's shared one."""
    monkeypatch.setenv("UNET_TRANSFER_FAST_CHOICES", str(tmp_path / "cache" / "fast_choices.json"))


def timer(table: dict, calls: list):
    """A stand-in for timing training steps: seconds per step by (precision, channels_last, compile)."""
    def measure(model, optimizer, settings: FastSettings, shape, device):
        calls.append((settings, shape))
        return table[(settings.precision, settings.channels_last, settings.compile)]
    return measure


SLOW_BF16 = {("32-true", False, False): 1.0, ("32-true", True, False): 0.8, ("bf16-mixed", False, False): 1.3,
             ("bf16-mixed", True, False): 1.1}  # a CPU with bf16 instructions where bf16 still loses
FAST_BF16 = {**SLOW_BF16, ("bf16-mixed", True, False): 0.3}  # AMX or a GPU


@pytest.mark.parametrize("native,table,expected", [
    (True, FAST_BF16, FastSettings("bf16-mixed", True, False)),
    (True, SLOW_BF16, FastSettings("32-true", True, False)),
    (False, FAST_BF16, FastSettings("32-true", True, False)),  # no native bf16: never tried
])
def test_the_fastest_candidate_wins_and_bf16_is_tried_only_where_native(make_cfg, monkeypatch, native, table, expected):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: native)
    calls = []
    settings, record = choose(make_cfg(), model=None, optimizer_factory=None, n_train=16, measure=timer(table, calls))
    assert settings == expected and record["chosen_by"] == "measured" and "fastest of" in record["why"]
    assert {s.precision for s, _ in calls} == ({"32-true", "bf16-mixed"} if native else {"32-true"})


def test_choices_are_kept_per_shape_and_reused_not_measured_again(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: True)
    calls = []
    measure = timer(FAST_BF16, calls)
    first, _ = choose(make_cfg(), None, None, 16, measure=measure)
    measured = len(calls)
    again, record = choose(make_cfg(name="another"), None, None, 16, measure=measure)
    assert again == first and len(calls) == measured and record["chosen_by"] == "measured"
    choose(make_cfg("dataset.image_size=64", name="bigger"), None, None, 16, measure=measure)
    assert len(calls) == 2 * measured and calls[-1][1][-1] == 64  # another shape: measured once more


def test_a_setting_given_explicitly_is_kept(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: True)
    calls = []
    settings, _ = choose(make_cfg("fast.channels_last=false"), None, None, 16, measure=timer(FAST_BF16, calls))
    assert settings.channels_last is False and {s.channels_last for s, _ in calls} == {False}
    given, record = choose(make_cfg("fast.channels_last=true", "trainer.precision=32-true", "fast.compile=false"),
                           None, None, 16, measure=timer(FAST_BF16, calls))
    assert given == FastSettings("32-true", True, False) and record["chosen_by"] == "given"


def test_compiling_is_tried_only_when_the_run_is_long_enough_to_repay_it(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: False)
    table = {**SLOW_BF16, ("32-true", True, True): 0.5}
    calls = []
    choose(make_cfg(), None, None, 16, measure=timer(table, calls))  # 1 epoch of 4 steps: seconds
    assert not any(s.compile for s, _ in calls)
    monkeypatch.setattr(fast, "COMPILE_WORTH_S", 1.0)
    settings, _ = choose(make_cfg("trainer.max_epochs=20", name="long"), None, None, 16, measure=timer(table, calls))
    assert settings == FastSettings("32-true", True, True)


def choices_file():
    import os
    from pathlib import Path

    return Path(os.environ["UNET_TRANSFER_FAST_CHOICES"])


@pytest.mark.parametrize("damage", [
    lambda stored: [],  # a list, not a dict of records
    lambda stored: {key: {k: v for k, v in record.items() if k != "step_s"} for key, record in stored.items()},
    lambda stored: {key: {**record, "timings": []} for key, record in stored.items()},
    lambda stored: {key: "fp32" for key in stored},
    lambda stored: {key: {**record, "measurements": "two"} for key, record in stored.items()},
])
def test_a_choices_file_of_the_wrong_shape_is_measured_again_not_a_traceback(make_cfg, monkeypatch, damage):
    import json

    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: False)
    calls = []
    first, _ = choose(make_cfg(), None, None, 16, measure=timer(SLOW_BF16, calls))
    path = choices_file()
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    again, record = choose(make_cfg(name="again"), None, None, 16, measure=timer(SLOW_BF16, calls))
    assert again == first and record["chosen_by"] == "measured" and len(calls) == 4  # measured once more
    assert isinstance(json.loads(path.read_text()), dict)


DISTURBED = {("32-true", False, False): 25.1, ("32-true", True, False): 0.1}  # a 251x "speedup" on a loaded machine
CALM = {("32-true", False, False): 0.08, ("32-true", True, False): 0.1}


def test_an_implausible_record_is_measured_again_keeping_each_candidates_least_disturbed_time(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: False)
    calls = []
    first, _ = choose(make_cfg(), None, None, 16, measure=timer(DISTURBED, calls))
    assert first == FastSettings("32-true", True, False) and len(calls) == 2  # not measured twice in one run
    again, record = choose(make_cfg(name="next"), None, None, 16, measure=timer(CALM, calls))
    assert len(calls) == 4 and again == FastSettings("32-true", False, False)
    assert record["measurements"] == 2 and record["timings"][next(iter(record["timings"]))] == 80.0
    choose(make_cfg(name="third"), None, None, 16, measure=timer(CALM, calls))
    assert len(calls) == 4  # plausible now: kept


def test_a_record_taken_under_load_is_measured_again_when_read(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: False)
    monkeypatch.setattr(fast, "other_work_during", lambda run: (run(), 0.9))
    calls = []
    _, record = choose(make_cfg(), None, None, 16, measure=timer(SLOW_BF16, calls))
    assert record["other_work"] == 0.9 and len(calls) == 2
    monkeypatch.setattr(fast, "other_work_during", lambda run: (run(), 0.01))
    _, record = choose(make_cfg(name="next"), None, None, 16, measure=timer(SLOW_BF16, calls))
    assert len(calls) == 4 and record["other_work"] == 0.01
    choose(make_cfg(name="third"), None, None, 16, measure=timer(SLOW_BF16, calls))
    assert len(calls) == 4


def test_a_record_that_stays_implausible_is_kept_after_a_few_measurements(make_cfg, monkeypatch):
    monkeypatch.setattr("unet_transfer.hardware.native_bf16", lambda: False)
    calls = []
    for run in range(fast.MAX_MEASUREMENTS + 2):
        settings, record = choose(make_cfg(name=f"run{run}"), None, None, 16, measure=timer(DISTURBED, calls))
    assert len(calls) == 2 * fast.MAX_MEASUREMENTS and record["measurements"] == fast.MAX_MEASUREMENTS
    assert settings == FastSettings("32-true", True, False)


def test_the_share_of_other_work_is_unknown_for_a_measurement_too_short_to_tell():
    assert fast.other_work_during(lambda: {"a": 1}) == ({"a": 1}, None)
