"""The shim with real processes: results, exit statuses, log files, failure kinds, multi-command."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from shim_helpers import (
    history_data,
    last_run,
    log_files,
    make_config,
    make_job,
    only_log,
    run_shim,
    shell,
    write_yaml_setup,
)

from pcsystemd import locking, runner, slowstart
from pcsystemd.runlog import list_log_files

LOG_NAME = re.compile(r"demo-(\d{8})-(\d{6})(?:-(\d+))?\.log")


def test_success_writes_log_with_header_footer_and_history(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    command = ("/bin/echo", "hello world", "it's")
    finished = run_shim(make_job([command]), config, work=tmp_path)
    assert finished.returncode == 0, finished

    [log] = log_files(config)
    match = LOG_NAME.fullmatch(log.name)
    assert match and match[3] is None
    text = log.read_text()
    assert f"# command: {shlex.join(command)}\n" in text
    assert re.search(r"^# pid: \d+$", text, re.M)
    assert "# user: root\n" in text
    start = re.search(r"^# start: (\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.\d{3}Z$", text, re.M)
    assert start is not None
    # The file name is the start time in UTC.
    assert match[1] == "".join(start.groups()[:3]) and match[2] == "".join(start.groups()[3:])
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} \[stdout\] hello world it's$", text, re.M)
    assert text.endswith("# result: success\n# exit status: 0\n")
    assert re.search(r"^# duration: \d+\.\d{3} s$", text, re.M)

    run = last_run(config)
    assert run["result"] == "success"
    assert run["exit_status"] == 0
    assert run["log_file"] == str(log)
    assert run["end"] is not None and run["duration_seconds"] >= 0
    assert history_data(config)["consecutive_failures"] == 0
    # Run by hand, the job's output also reaches the caller's terminal.
    assert b"hello world it's\n" in finished.stdout


def test_nonzero_exit_fails_with_the_jobs_status(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    finished = run_shim(make_job([shell("echo bad >&2; exit 3")]), config, work=tmp_path)
    assert finished.returncode == 3
    text = only_log(config)
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} \[stderr\] bad$", text, re.M)
    assert text.endswith("# result: failed\n# exit status: 3\n")
    run = last_run(config)
    assert (run["result"], run["exit_status"], run["signal"]) == ("failed", 3, None)
    assert history_data(config)["consecutive_failures"] == 1


def test_death_by_signal_is_named(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    finished = run_shim(make_job([shell("kill -KILL $$")]), config, work=tmp_path)
    assert finished.returncode == 128 + 9
    assert "# signal: SIGKILL\n" in only_log(config)
    run = last_run(config)
    assert (run["result"], run["signal"], run["exit_status"]) == ("failed", "SIGKILL", None)


def test_missing_executable(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    finished = run_shim(make_job([["/nonexistent/program", "x"]]), config, work=tmp_path)
    assert finished.returncode == runner.EXIT_NOT_FOUND
    run = last_run(config)
    assert run["result"] == "error"
    assert "command not found: /nonexistent/program" in run["message"]
    assert "command not found: /nonexistent/program" in only_log(config)
    assert b"command not found" in finished.stderr


def test_command_that_is_not_executable(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    finished = run_shim(make_job([[str(script)]]), config, work=tmp_path)
    assert finished.returncode == runner.EXIT_NOT_EXECUTABLE
    assert "cannot execute" in last_run(config)["message"]


def test_bad_working_directory(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([["pwd"]], working_directory=str(tmp_path / "missing"))
    finished = run_shim(job, config, work=tmp_path)
    assert finished.returncode == runner.EXIT_ERROR
    run = last_run(config)
    assert run["result"] == "error"
    assert f"working directory {tmp_path / 'missing'} does not exist" in run["message"]


def test_working_directory_and_environment_reach_the_job(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job(
        [shell('pwd; echo "GREETING=$GREETING JOB=$PCSYSTEMD_JOB STREAM=${JOURNAL_STREAM-unset}"')],
        working_directory=str(tmp_path),
        environment=(("GREETING", "hi there"),),
    )
    finished = run_shim(job, config, work=tmp_path, environment={"JOURNAL_STREAM": "1:2"})
    assert finished.returncode == 0, finished
    text = only_log(config)
    assert f" [stdout] {tmp_path}\n" in text
    assert " [stdout] GREETING=hi there JOB=demo STREAM=unset\n" in text


def test_job_gets_dev_null_as_stdin_and_no_other_descriptors(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("readlink /proc/self/fd/0; ls /proc/self/fd | sort -n | tr '\\n' ' '")])
    with open(tmp_path / "inherited", "w") as inherited:
        finished = run_shim(job, config, work=tmp_path, stdin=inherited)
    assert finished.returncode == 0, finished
    text = only_log(config)
    assert " [stdout] /dev/null\n" in text
    # 0, 1, 2, and the descriptor `ls` opens on the directory itself.
    assert re.search(r" \[stdout\] 0 1 2 3 $", text, re.M), text


def test_stderr_is_failure_is_opt_in(tmp_path: Path) -> None:
    script = shell("echo warning >&2; exit 0")
    plain = make_config(tmp_path / "plain")
    assert run_shim(make_job([script]), plain, work=tmp_path).returncode == 0
    assert last_run(plain)["result"] == "success"

    strict = make_config(tmp_path / "strict")
    finished = run_shim(make_job([script], stderr_is_failure=True), strict, work=tmp_path)
    assert finished.returncode == runner.EXIT_FAILURE
    run = last_run(strict)
    assert run["result"] == "failed" and run["exit_status"] == 0
    assert "stderr_is_failure" in run["message"]


def test_success_exit_codes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("exit 3")], success_exit_codes=(3,))
    assert run_shim(job, config, work=tmp_path).returncode == 0
    assert last_run(config)["result"] == "success"
    job = make_job([shell("exit 4")], success_exit_codes=(3,))
    assert run_shim(job, config, work=tmp_path).returncode == 4


def test_commands_run_in_sequence_and_stop_at_the_first_failure(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    marker = tmp_path / "third-ran"
    job = make_job(
        [["echo", "first"], shell("echo second; exit 5"), ["touch", str(marker)]],
    )
    finished = run_shim(job, config, work=tmp_path)
    assert finished.returncode == 5
    assert not marker.exists()
    text = only_log(config)
    assert "# command 1/3: echo first\n" in text and "# command 3/3: touch " in text
    assert text.index(" [stdout] first\n") < text.index(" [stdout] second\n")
    assert "command 2/3 ended: failed (exit status 5)" in text
    assert "not running the remaining 1 command(s)" in text
    assert len(log_files(config)) == 1


def test_all_commands_succeeding(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([["echo", "one"], ["echo", "two"]])
    assert run_shim(job, config, work=tmp_path).returncode == 0
    text = only_log(config)
    assert "command 1/2 ended: success" in text and "command 2/2 ended: success" in text


def test_two_runs_in_the_same_second_get_distinct_logs(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    directory = config.log_directory / "demo"
    directory.mkdir(parents=True)
    # Occupy the names of the next few seconds, as an earlier run in the same second would.
    now = time.time()
    taken = set()
    for offset in range(5):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now + offset))
        (directory / f"demo-{stamp}.log").write_text("an earlier run\n")
        taken.add(f"demo-{stamp}.log")
    assert run_shim(make_job([["true"]]), config, work=tmp_path).returncode == 0
    new = [path for path in log_files(config) if path.name not in taken]
    assert len(new) == 1
    match = LOG_NAME.fullmatch(new[0].name)
    assert match and match[3] == "1"
    for name in taken:
        assert (directory / name).read_text() == "an earlier run\n"
    # Ordering by name keeps the suffixed file after the plain one of the same second.
    ordered = [path.name for path in list_log_files(directory, "demo")]
    assert ordered.index(new[0].name) == ordered.index(new[0].name.replace("-1.log", ".log")) + 1


def test_retention_keeps_the_newest_runs(tmp_path: Path) -> None:
    config = make_config(tmp_path, log_retention_runs=3, log_retention_days=0)
    directory = config.log_directory / "demo"
    directory.mkdir(parents=True)
    old = [directory / f"demo-2020010{day}-120000.log" for day in range(1, 8)]
    for path in old:
        path.write_text("old\n")
    foreign = directory / "notes.txt"
    foreign.write_text("keep me\n")
    other_job = directory / "demo2-20200101-120000.log"
    other_job.write_text("not ours\n")
    assert run_shim(make_job(), config, work=tmp_path).returncode == 0
    remaining = list_log_files(directory, "demo")
    assert len(remaining) == 3
    assert remaining[:2] == old[-2:]
    assert foreign.exists() and other_job.exists()


def test_retention_by_age(tmp_path: Path) -> None:
    config = make_config(tmp_path, log_retention_runs=0, log_retention_days=30)
    directory = config.log_directory / "demo"
    directory.mkdir(parents=True)
    ancient = directory / "demo-20000101-000000.log"
    ancient.write_text("old\n")
    recent_stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() - 86400))
    recent = directory / f"demo-{recent_stamp}.log"
    recent.write_text("yesterday\n")
    assert run_shim(make_job(), config, work=tmp_path).returncode == 0
    assert not ancient.exists()
    assert recent.exists()
    assert len(list_log_files(directory, "demo")) == 2


def test_log_directory_not_writable_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    config = make_config(tmp_path, log_directory=tmp_path / "not-a-directory")
    marker = tmp_path / "ran"
    finished = run_shim(make_job([["touch", str(marker)]]), config, work=tmp_path)
    assert finished.returncode == runner.EXIT_ERROR
    assert b"cannot create" in finished.stderr and b"not-a-directory" in finished.stderr
    assert not marker.exists()
    run = last_run(config)
    assert run["result"] == "error" and "not-a-directory" in run["message"]


def test_log_write_failure_keeps_output_flowing_and_fails_the_run(tmp_path: Path) -> None:
    """A full disk (here: a file size limit) must neither hang the job nor lose its output."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    config = make_config(tmp_path)
    # 2 MiB of output: far more than the log file may hold.
    job = make_job(
        [
            shell(
                "i=0; while [ $i -lt 16 ]; do"
                " head -c 131072 /dev/zero | tr '\\0' x; echo; i=$((i+1)); done"
            )
        ]
    )
    finished = run_shim(job, config, work=tmp_path, preexec_fn=small_files, timeout=60)
    assert finished.returncode == runner.EXIT_ERROR, finished
    assert finished.stdout.count(b"x") == 16 * 131072  # every byte still reached stdout
    run = last_run(config)
    assert run["result"] == "error"
    assert "log incomplete" in run["message"] and "File too large" in run["message"]
    assert b"File too large" in finished.stderr


def test_shim_refuses_slow_start_without_slow_start_command(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    finished = run_shim(make_job(), config, work=tmp_path, slow_start=True)
    assert finished.returncode == runner.EXIT_ERROR
    assert "no slow_start_command" in last_run(config)["message"]


def test_slow_start_runs_the_alternate_command(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([["echo", "normal"]], slow_start_commands=[["echo", "slow and careful"]])
    assert run_shim(job, config, work=tmp_path, slow_start=True).returncode == 0
    text = only_log(config)
    assert " [stdout] slow and careful\n" in text and " [stdout] normal\n" not in text
    assert "# slow start: yes\n" in text
    assert last_run(config)["slow_start"] is True


def test_slow_start_request_is_honoured_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([["echo", "normal"]], slow_start_commands=[["echo", "slow"]])
    request_id = slowstart.request(config, "demo")
    path = Path(slowstart.request_path(config.lock_directory, "demo"))
    assert path.parent == config.lock_directory.parent / "slow-start"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert slowstart.pending(str(config.lock_directory), "demo") == request_id

    assert run_shim(job, config, work=tmp_path).returncode == 0
    assert last_run(config)["slow_start"] is True
    assert run_shim(job, config, work=tmp_path).returncode == 0
    assert last_run(config)["slow_start"] is False, "a request is honoured once"
    outputs = [path.read_text() for path in log_files(config)]
    assert [(" [stdout] slow\n" in text, " [stdout] normal\n" in text) for text in outputs] == [
        (True, False),
        (False, True),
    ]


def test_a_slow_start_request_for_a_skipped_run_is_dropped(tmp_path: Path) -> None:
    # The run the request was for did not happen (lock held): a later scheduled run must not
    # inherit it.
    config = make_config(tmp_path)
    job = make_job([["echo", "normal"]], slow_start_commands=[["echo", "slow"]])
    slowstart.request(config, "demo")
    holder = locking.open_lock(locking.lock_file_path(config, "demo"), inherited_fd=-1)
    try:
        assert locking.try_lock(holder)
        assert run_shim(job, config, work=tmp_path).returncode == 0  # skipped
        assert last_run(config)["result"] == "skipped"
    finally:
        os.close(holder)
    assert run_shim(job, config, work=tmp_path).returncode == 0
    assert last_run(config)["slow_start"] is False


def test_stale_or_forged_slow_start_request_is_ignored(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([["echo", "normal"]], slow_start_commands=[["echo", "slow"]])
    slowstart.request(config, "demo")
    path = Path(slowstart.request_path(config.lock_directory, "demo"))
    created = time.time() - slowstart.REQUEST_TTL_SECONDS - 10
    path.write_text(f'{{"id": "old", "created": {created}}}\n')
    assert slowstart.pending(str(config.lock_directory), "demo") is None
    path.write_text(f'{{"id": "forged", "created": {time.time()}}}\n')
    os.chown(path, 65534, 65534)
    assert slowstart.pending(str(config.lock_directory), "demo") is None
    assert run_shim(job, config, work=tmp_path).returncode == 0
    assert last_run(config)["slow_start"] is False


def test_stop_timeout_agrees_with_the_kill_grace_period() -> None:
    assert runner.KILL_GRACE_SECONDS > 0
    assert runner.stop_timeout_seconds() > runner.KILL_GRACE_SECONDS + runner.DRAIN_SECONDS


def test_startup_path_imports_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "import pcsystemd.shim\n"
        "heavy = sorted(name for name in sys.modules"
        " if name.split('.')[0] in ('jinja2', 'croniter', 'pystemd'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def run_cli(arguments: list[str], prologue: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prologue}import sys\nfrom pcsystemd.cli import main\nsys.exit(main({arguments!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_cli_run_job_path_imports_no_heavy_modules(tmp_path: Path) -> None:
    """The real path: `pcsystemd run-job` through cli.main, config and job loading included."""
    config_file = write_yaml_setup(
        tmp_path, "name: Quick\ncommand: /bin/echo from yaml\nuser: root\n"
    )
    prologue = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(name for name in sys.modules"
        " if name.split('.')[0] in ('jinja2', 'croniter', 'pystemd'))))\n"
    )
    result = run_cli(["run-job", "--config", str(config_file), "quick"], prologue)
    assert result.returncode == 0, result
    assert result.stdout.strip().splitlines()[-1] == "[]", result
    [log] = (tmp_path / "log" / "quick").glob("quick-*.log")
    assert " [stdout] from yaml\n" in log.read_text()


def test_cli_run_job_with_a_removed_job_file(tmp_path: Path) -> None:
    config_file = write_yaml_setup(tmp_path, None)
    (tmp_path / "state" / "quick").mkdir(parents=True)  # it ran before the file was removed
    result = run_cli(["run-job", "--config", str(config_file), "quick"])
    assert result.returncode == runner.EXIT_ERROR, result
    assert "cannot load the job file" in result.stderr
    history = json.loads((tmp_path / "state" / "quick" / "history.json").read_text())
    assert history["runs"][-1]["result"] == "error"
    assert "cannot load the job file" in history["runs"][-1]["message"]


def test_cli_run_job_with_an_invalid_job_file(tmp_path: Path) -> None:
    config_file = write_yaml_setup(tmp_path, "name: Broken\ncommand: /bin/true\nschedul: x\n")
    result = run_cli(["run-job", "--config", str(config_file), "quick"])
    assert result.returncode == runner.EXIT_ERROR, result
    assert "quick.yaml:3" in result.stderr and "schedul" in result.stderr


def test_cli_run_job_with_an_invalid_global_config(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("no_such_key: 1\n")
    result = run_cli(["run-job", "--config", str(config_file), "quick"])
    assert result.returncode == 2, result
    assert "global configuration is invalid" in result.stderr
