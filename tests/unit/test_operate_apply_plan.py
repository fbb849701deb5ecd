"""apply.decide: which steps bring systemd from what it has to what the job directory asks for."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from pcsystemd.apply import Action, Desired, Observed, Step, decide, invalid_unit_bases
from pcsystemd.errors import Diagnostic
from pcsystemd.install import Changes
from pcsystemd.model import Mode
from pcsystemd.systemd import UnitState, UnitSummary

ETC = Path("/etc/systemd/system")
GENERATED = Path("/run/systemd/generator")
YAK_UNITS = ["pcsystemd-yak.service", "pcsystemd-yak.timer"]


def unit(
    name: str,
    *,
    load: str = "loaded",
    active: str = "active",
    enabled: str = "enabled",
    stale: bool = False,
) -> UnitState:
    # fields this test does not care about are None, so new adapter fields do not break it
    values: dict[str, Any] = {field.name: None for field in fields(UnitState)}
    values.update(
        name=name,
        load_state=load,
        active_state=active,
        sub_state="",
        unit_file_state=enabled,
        description="",
        fragment_path="",
        need_daemon_reload=stale,
        invocation_id="",
    )
    return UnitState(**values)


def absent(name: str) -> UnitState:
    return unit(name, load="not-found", active="inactive", enabled="")


def desired(*names: str, timers: tuple[str, ...] = (), locks: tuple[str, ...] = ()) -> Desired:
    return Desired(
        files={name: f"# {name}\n" for name in names},
        triggers=frozenset(timers),
        keep=frozenset(),
        lock_units=frozenset(locks),
        job_count=len(timers),
        diagnostics=(),
    )


def plan(
    mode: Mode,
    changes: Changes,
    wanted: Desired,
    units: list[UnitState],
    *,
    leftovers: tuple[str, ...] = (),
    loaded: tuple[UnitSummary, ...] = (),
    own_unit: str | None = None,
) -> tuple[list[tuple[Action, str]], list[str]]:
    directory, other = (ETC, GENERATED) if mode is Mode.APPLY else (GENERATED, ETC)
    steps, warnings = decide(
        mode=mode,
        directory=directory,
        other_directory=other,
        changes=changes,
        leftovers=leftovers,
        desired=wanted,
        observed=Observed(units={u.name: u for u in units}, loaded=loaded, own_unit=own_unit),
    )
    return [(step.action, step.target) for step in steps], warnings


def test_a_new_job_is_written_enabled_reloaded_and_started() -> None:
    steps, warnings = plan(
        Mode.APPLY,
        Changes(added=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [absent(name) for name in YAK_UNITS],
    )
    assert steps == [
        (Action.ADD, f"{ETC}/pcsystemd-yak.service"),
        (Action.ADD, f"{ETC}/pcsystemd-yak.timer"),
        (Action.ENABLE, "pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
        (Action.START, "pcsystemd-yak.timer"),
    ]
    assert warnings == []


def test_an_applied_state_plans_nothing() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [unit("pcsystemd-yak.service", active="inactive", enabled="static"), unit(YAK_UNITS[1])],
    )
    assert steps == []


def test_a_gone_job_is_stopped_before_its_files_go_and_nothing_stays_failed() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(removed=list(YAK_UNITS)),
        desired(),
        [
            unit("pcsystemd-yak.service", active="failed", enabled="static"),
            unit("pcsystemd-yak.timer"),
        ],
    )
    assert steps == [
        (Action.STOP, "pcsystemd-yak.timer"),
        (Action.DISABLE, "pcsystemd-yak.timer"),
        (Action.REMOVE, f"{ETC}/pcsystemd-yak.service"),
        (Action.REMOVE, f"{ETC}/pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
        (Action.RESET_FAILED, "pcsystemd-yak.service"),
    ]


def test_a_running_service_of_a_gone_job_is_stopped_after_its_timer() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(removed=list(YAK_UNITS)),
        desired(),
        [unit("pcsystemd-yak.service", enabled="static"), unit("pcsystemd-yak.timer")],
    )
    stops = [target for action, target in steps if action is Action.STOP]
    assert stops == ["pcsystemd-yak.timer", "pcsystemd-yak.service"]


@pytest.mark.parametrize(
    ("active", "expected"), [("active", Action.RESTART), ("inactive", Action.START)]
)
def test_a_changed_timer_is_restarted_or_started(active: str, expected: Action) -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(changed=["pcsystemd-yak.timer"], unchanged=["pcsystemd-yak.service"]),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [unit("pcsystemd-yak.service", enabled="static"), unit(YAK_UNITS[1], active=active)],
    )
    assert steps == [
        (Action.CHANGE, f"{ETC}/pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
        (expected, "pcsystemd-yak.timer"),
    ]


def test_a_disabled_or_stopped_timer_is_enabled_and_started_again() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [
            unit("pcsystemd-yak.service", enabled="static"),
            unit(YAK_UNITS[1], active="inactive", enabled="disabled"),
        ],
    )
    assert steps == [
        (Action.ENABLE, "pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
        (Action.START, "pcsystemd-yak.timer"),
    ]


def test_a_masked_timer_is_left_alone_with_a_warning() -> None:
    steps, warnings = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [
            unit("pcsystemd-yak.service", enabled="static"),
            unit(YAK_UNITS[1], load="masked", active="inactive", enabled="masked"),
        ],
    )
    assert steps == []
    assert len(warnings) == 1 and "pcsystemd-yak.timer is masked" in warnings[0]


def test_files_systemd_has_not_loaded_yet_need_a_reload() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [unit("pcsystemd-yak.service", enabled="static", stale=True), unit(YAK_UNITS[1])],
    )
    assert steps == [(Action.RELOAD, "systemd")]


def test_orphans_without_a_file_are_stopped_or_reset() -> None:
    orphans = (
        UnitSummary("pcsystemd-old.timer", "", "not-found", "active", "waiting", None),
        UnitSummary("pcsystemd-old.service", "", "not-found", "failed", "failed", None),
        UnitSummary("pcsystemd-yak.service", "", "loaded", "failed", "failed", None),
    )
    steps, _ = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [unit("pcsystemd-yak.service", active="failed", enabled="static"), unit(YAK_UNITS[1])],
        loaded=orphans,
    )
    # a job's own failed service is its real state and stays; only file-less units are cleaned
    assert steps == [
        (Action.STOP, "pcsystemd-old.timer"),
        (Action.RESET_FAILED, "pcsystemd-old.service"),
    ]


def test_a_tag_target_that_goes_is_never_stopped() -> None:
    # stopping it would stop every loaded job still PartOf= it
    steps, _ = plan(
        Mode.APPLY,
        Changes(removed=["pcsystemd-tag-audit.target"]),
        desired(),
        [unit("pcsystemd-tag-audit.target", enabled="static")],
    )
    assert steps == [
        (Action.REMOVE, f"{ETC}/pcsystemd-tag-audit.target"),
        (Action.RELOAD, "systemd"),
    ]


def test_generator_mode_starts_new_timers_without_enabling_them() -> None:
    steps, _ = plan(
        Mode.GENERATOR,
        Changes(added=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [absent(name) for name in YAK_UNITS],
    )
    assert steps == [
        (Action.ADD, f"{GENERATED}/pcsystemd-yak.service"),
        (Action.ADD, f"{GENERATED}/pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
        (Action.START, "pcsystemd-yak.timer"),
    ]


def test_generator_mode_takes_over_what_apply_mode_left_in_etc() -> None:
    # the jobs are the same: apply's copies go, the running timer keeps running
    steps, _ = plan(
        Mode.GENERATOR,
        Changes(added=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",)),
        [unit("pcsystemd-yak.service", active="inactive", enabled="static"), unit(YAK_UNITS[1])],
        leftovers=tuple(YAK_UNITS),
    )
    assert steps == [
        (Action.DISABLE, "pcsystemd-yak.timer"),
        (Action.ADD, f"{GENERATED}/pcsystemd-yak.service"),
        (Action.ADD, f"{GENERATED}/pcsystemd-yak.timer"),
        (Action.REMOVE, f"{ETC}/pcsystemd-yak.service"),
        (Action.REMOVE, f"{ETC}/pcsystemd-yak.timer"),
        (Action.RELOAD, "systemd"),
    ]


def test_apply_mode_stops_generator_units_that_it_does_not_replace() -> None:
    steps, _ = plan(
        Mode.APPLY,
        Changes(),
        desired(),
        [unit("pcsystemd-old.timer", enabled="generated")],
        leftovers=("pcsystemd-old.timer",),
    )
    assert steps == [(Action.STOP, "pcsystemd-old.timer"), (Action.RELOAD, "systemd")]


def test_step_descriptions_align_and_carry_their_note() -> None:
    assert Step(Action.STOP, "pcsystemd-a.timer").describe() == "stop         pcsystemd-a.timer"
    assert Step(Action.RESET_FAILED, "x", "orphan").describe() == "reset-failed x  (orphan)"


def test_invalid_job_files_keep_their_units_by_unit_base() -> None:
    diagnostics = [
        Diagnostic("/etc/pcsystemd/jobs/yak.yaml", 3, 1, "bad"),
        Diagnostic("/etc/pcsystemd/jobs/fine.yaml", 1, 1, "odd", severity="warning"),
    ]
    assert invalid_unit_bases(diagnostics) == {"pcsystemd-yak"}


def test_desired_counts_only_errors_as_invalid() -> None:
    wanted = replace(
        desired(),
        diagnostics=(
            Diagnostic("a.yaml", 1, 1, "bad"),
            Diagnostic("b.yaml", 1, 1, "meh", severity="warning"),
        ),
    )
    assert wanted.invalid_count == 1


WATCHER = ["pcsystemd-reload.path", "pcsystemd-reload.service"]


def test_generator_mode_starts_the_watcher_like_a_timer() -> None:
    steps, _ = plan(
        Mode.GENERATOR,
        Changes(added=[*WATCHER]),
        desired(*WATCHER, timers=("pcsystemd-reload.path",)),
        [absent(name) for name in WATCHER],
    )
    assert steps == [
        (Action.ADD, f"{GENERATED}/pcsystemd-reload.path"),
        (Action.ADD, f"{GENERATED}/pcsystemd-reload.service"),
        (Action.RELOAD, "systemd"),
        (Action.START, "pcsystemd-reload.path"),
    ]


def test_the_watcher_service_is_never_stopped_as_it_may_be_running_the_plan() -> None:
    # auto_reload was turned off: the watcher's files go while its service runs `reload --auto`
    steps, _ = plan(
        Mode.GENERATOR,
        Changes(removed=[*WATCHER]),
        desired(),
        [unit("pcsystemd-reload.path", enabled="static"), unit("pcsystemd-reload.service")],
        loaded=(UnitSummary("pcsystemd-reload.service", "", "not-found", "active", "start", None),),
        own_unit="pcsystemd-reload.service",  # the plan runs in it
    )
    assert steps == [
        (Action.STOP, "pcsystemd-reload.path"),
        (Action.REMOVE, f"{GENERATED}/pcsystemd-reload.path"),
        (Action.REMOVE, f"{GENERATED}/pcsystemd-reload.service"),
        (Action.RELOAD, "systemd"),
    ]


def test_the_lock_unit_of_a_group_no_job_uses_is_released_after_the_reload() -> None:
    # sleeper (lock group "sleeper") is gone and still running; yak keeps its own group
    lock = "pcsystemd-lock@sleeper.service"
    steps, _ = plan(
        Mode.GENERATOR,
        Changes(removed=["pcsystemd-sleeper.service"], unchanged=list(YAK_UNITS)),
        desired(*YAK_UNITS, timers=("pcsystemd-yak.timer",), locks=("pcsystemd-lock@yak.service",)),
        [unit("pcsystemd-sleeper.service", enabled="static"), *map(unit, YAK_UNITS)],
        loaded=(
            UnitSummary(lock, "", "loaded", "active", "exited", None),
            UnitSummary("pcsystemd-lock@yak.service", "", "loaded", "active", "exited", None),
            UnitSummary("pcsystemd-lock@old.service", "", "loaded", "inactive", "dead", None),
        ),
    )
    # after the reload: before it, a running job of a renamed group still Requires= the lock
    assert steps == [
        (Action.STOP, "pcsystemd-sleeper.service"),
        (Action.REMOVE, f"{GENERATED}/pcsystemd-sleeper.service"),
        (Action.RELOAD, "systemd"),
        (Action.RELEASE, lock),
    ]


def test_lock_units_stay_while_apply_mode_keeps_an_invalid_jobs_units() -> None:
    # the kept units name a lock group that cannot be known: leave every lock unit alone
    kept = replace(desired(*YAK_UNITS), keep=frozenset({"pcsystemd-typo"}))
    steps, _ = plan(
        Mode.APPLY,
        Changes(unchanged=list(YAK_UNITS)),
        kept,
        [unit(name) for name in YAK_UNITS],
        loaded=(
            UnitSummary("pcsystemd-lock@typo.service", "", "loaded", "active", "exited", None),
        ),
    )
    assert steps == []
