"""The trials loop: interference detected (real busy processes), ``--trials auto`` and its stop
rules, ``--interleave`` order, and the options' errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from streambench.cli.run import main
from streambench.runners.local.interference import Snapshot, TrialLoad, assess, outliers, robust_z
from streambench.runners.local.trials import TrialMeans, TrialRule, stop_reason

SPIN = "import time\nwhile True: pass\n"


def _runs(first, rest=None):
    rest = rest if rest is not None else first
    return [SimpleNamespace(first_token_s=f, rest_token_mean_s=r) for f, r in zip(first, rest)]


# -- stop rules -----------------------------------------------------------------------------------
def test_a_pass_over_a_prompt_file_is_one_trial_of_its_means():
    """Several runs per trial (a prompt file): the rule sees each trial's means; one run is
    itself; a run without a statistic leaves that mean out (None)."""
    one = _runs([2.0])
    assert TrialMeans.of(one) is one[0]
    means = TrialMeans.of(_runs([1.0, 3.0], [0.1, 0.3]))
    assert means.first_token_s == 2.0 and abs(means.rest_token_mean_s - 0.2) < 1e-12
    assert TrialMeans.of(_runs([1.0, 3.0], [0.1, None])).rest_token_mean_s is None
    # short and long prompts alternate within each pass: the passes agree, the target is met
    passes = [TrialMeans.of(_runs([0.1, 0.9], [0.01, 0.03])) for _ in range(6)]
    assert stop_reason(TrialRule(30, auto=True), passes, 1.0) == "target"


def test_fixed_trials_stop_at_the_count():
    rule = TrialRule(3)
    assert stop_reason(rule, _runs([1.0, 1.0]), 0.0) is None
    assert stop_reason(rule, _runs([1.0, 1.0, 1.0]), 0.0) == "trials"


def test_auto_waits_for_six_trials_then_for_a_narrow_interval():
    rule = TrialRule(30, auto=True, target_ci=0.05)
    tight = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    assert stop_reason(rule, _runs(tight[:5]), 1.0) is None  # no interval with 5
    assert stop_reason(rule, _runs(tight), 1.0) == "target"
    wide = [1.0, 2.0, 0.5, 1.5, 0.7, 1.3]
    assert stop_reason(rule, _runs(wide), 1.0) is None
    # a narrow first token but a wide per-token time is not enough
    assert stop_reason(rule, _runs(tight, wide), 1.0) is None
    # one new token: no per-token time; the first token decides alone
    assert stop_reason(rule, _runs(tight, [None] * 6), 1.0) == "target"


def test_auto_limits():
    wide = [1.0, 2.0, 0.5, 1.5, 0.7, 1.3, 1.9]
    assert stop_reason(TrialRule(7, auto=True), _runs(wide), 1.0) == "max_trials"
    timed = TrialRule(30, auto=True, max_time_s=2.0)
    assert stop_reason(timed, _runs(wide[:2]), 1.9) is None
    assert stop_reason(timed, _runs(wide[:2]), 2.0) == "max_time"  # a hard limit, even below 6


# -- interference: arithmetic and real processes ---------------------------------------------------
def test_shares_from_snapshots():
    hz = os.sysconf("SC_CLK_TCK")
    a = Snapshot(0.0, (1000, 0, 5000), 1.0, (0, 0.0))
    # 400 jiffies busy of 1000 total; this tree used 100 jiffies' worth, steal 50
    b = Snapshot(1.0, (1400, 50, 6000), 1.0 + 100 / hz, (2, 0.3))
    load = TrialLoad.between(a, b)
    assert load.other_cpu_share == pytest.approx(0.3)
    assert load.own_cpu_share == pytest.approx(0.1)
    assert load.steal_share == pytest.approx(0.05)
    assert (load.nr_throttled, load.throttled_s) == (2, pytest.approx(0.3))
    assert load.busy(0.3) and not TrialLoad.between(a, a).busy(0.01)


def test_assess_says_how_busy_and_names_outliers():
    quiet = TrialLoad(1.0, 0.02, 0.0, 0.5, 0.1, None, None, None)
    busy = TrialLoad(1.0, 0.41, 0.0, 0.5, 2.0, None, None, None)
    trials = [{"first_token_s": v, "rest_token_mean_s": 0.01} for v in (0.1, 0.1, 0.11, 0.1, 2.0)]
    record, warnings = assess([busy, quiet, busy, busy, quiet], trials, 0.2)
    assert record["busy_trials"] == [1, 3, 4]
    assert warnings[0].startswith("the machine was busy: other processes used 41 % of the CPU")
    assert "during 3 of 5 trials" in warnings[0]
    assert any(w.startswith("trial 5 is an outlier: first token 2000.0 ms") for w in warnings)
    assert assess([quiet] * 5, trials[:4], 0.2)[1] == []
    assert outliers(trials[:4]) == [] and robust_z([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]


def _foreign_hog() -> int:
    """A process spinning a core that is *not* in this process tree (its parent exits: it is
    adopted by init), as another user's job would be; returns its pid."""
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {SPIN!r}], start_new_session=True,\n"
        "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _kill(pid: int) -> None:
    import psutil

    try:
        p = psutil.Process(pid)
        p.kill()
        p.wait(10)
    except psutil.Error:
        pass


def test_a_foreign_busy_process_is_other_load_and_our_own_child_is_not():
    hz = os.sysconf("SC_CLK_TCK")
    capacity = os.cpu_count() or 1
    hog = _foreign_hog()
    child = subprocess.Popen([sys.executable, "-c", SPIN])  # part of this process tree
    try:
        time.sleep(0.3)  # both running
        hog0, child0 = _cpu_s(hog), _cpu_s(child.pid)
        a = Snapshot.take()
        time.sleep(1.5)
        b = Snapshot.take()
        hog_s, child_s = _cpu_s(hog) - hog0, _cpu_s(child.pid) - child0
    finally:
        child.kill()
        child.wait()
        _kill(hog)
    load = TrialLoad.between(a, b)
    total_s = (b.proc_stat[2] - a.proc_stat[2]) / hz  # CPU-seconds of capacity
    other_s = load.other_cpu_share * total_s
    own_s = load.own_cpu_share * total_s
    tick = 4 * capacity / hz  # jiffy counters: a few ticks per CPU of slack
    assert hog_s > 0.05 and child_s > 0.05, (hog_s, child_s)  # both really ran
    assert other_s >= hog_s - tick, (other_s, hog_s)  # the foreign hog counts as other load
    assert own_s >= child_s - tick, (own_s, child_s)  # our own child counts as ours
    # the hog alone makes the trial busy at a threshold it exceeds
    assert load.busy((hog_s - tick) / total_s)
    _, warnings = assess([load], [], (hog_s - tick) / total_s)
    assert warnings and warnings[0].startswith("the machine was busy")


def _run(tmp_path, *args, name="out.json"):
    out = tmp_path / name
    code = main(["run", "--in-out", "8-4", "--warmup", "0", "-o", str(out), *args])
    doc = json.loads(out.read_text()) if out.exists() else None
    return code, doc


def test_run_with_a_busy_neighbour_warns_everywhere(tmp_path, capsys):
    hog = _foreign_hog()
    hog2 = _foreign_hog()  # a second core's worth too: this machine may have two
    try:
        code, doc = _run(tmp_path, "--trials", "3", "--busy-threshold", "5%")
    finally:
        _kill(hog)
        _kill(hog2)
    assert code == 0
    entry = doc["configurations"][0]
    shares = [t["other_cpu_share"] for t in entry["interference"]["trials"]]
    assert len(shares) == 3 and max(shares) >= 0.05, shares
    assert entry["interference"]["busy_threshold"] == 0.05
    busy = [w for w in entry["warnings"] if w.startswith("the machine was busy")]
    assert busy and "of the CPU during" in busy[0]
    assert "the machine was busy" in capsys.readouterr().err


def test_warnings_follow_the_threshold(tmp_path):
    code, doc = _run(tmp_path, "--trials", "3", "--busy-threshold", "100%")
    assert code == 0
    entry = doc["configurations"][0]
    loads = entry["interference"]["trials"]
    # a trial too short for a /proc/stat tick has no share (None): counted as 0, as assess does
    expected = any((t["other_cpu_share"] or 0) + (t["steal_share"] or 0) >= 1.0 for t in loads)
    said = any(w.startswith("the machine was busy") for w in entry.get("warnings") or [])
    assert said == expected and entry["stopped"] == "trials"


# -- --trials auto ------------------------------------------------------------------------------
def test_trials_auto_stops_at_the_target_also_interleaved(tmp_path, capsys):
    code, doc = _run(
        tmp_path,
        *("--trials", "auto", "--max-trials", "9", "--target-ci", "1000%", "--interleave"),
        *("--in-out", "8-4,12-4", "--warmup", "1"),
    )
    assert code == 0
    for entry in doc["configurations"]:
        n, auto = len(entry["trials"]), entry["adaptive"]
        assert entry["config"]["trials"] == auto["trials_run"] == n and auto["target_ci"] == 10.0
        widths = auto["half_width_rel"].values()
        if entry["stopped"] == "target":  # at the first chance, or at 9 (one outlier dropped)
            assert n in (6, 9) and all(w <= 10.0 for w in widths), (n, widths)
        else:  # a wild outlier on this shared machine: [min, max] is the interval up to 8
            assert entry["stopped"] == "max_trials" and n == 9, entry["stopped"]
    assert doc["settings"]["trials"] == "auto"
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at 80 columns here
    assert "auto: 6–9 trials" in out
    assert "auto: ±1000 % reached" in out or "auto: stopped at --max-trials 9 before" in out


def test_trials_auto_stops_at_max_trials_or_max_time(tmp_path):
    code, doc = _run(tmp_path, "--trials", "auto", "--max-trials", "7", "--target-ci", "0.0001%")
    entry = doc["configurations"][0]
    assert code == 0 and entry["stopped"] == "max_trials" and len(entry["trials"]) == 7
    code, doc = _run(
        tmp_path, "--trials", "auto", "--max-time", "0.001", "--target-ci", "0.0001%", name="t.json"
    )
    entry = doc["configurations"][0]
    assert code == 0 and entry["stopped"] == "max_time" and len(entry["trials"]) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "many"], "is not a whole number (expected 1 to 100000); or auto"),
        (["--target-ci", "5%"], "--target-ci works with --trials auto only"),
        (["--trials", "auto", "--max-trials", "3"], "needs at least 6"),
        (["--trials", "auto", "--target-ci", "-1"], "not a percentage"),
        (["--trials", "auto", "--max-time", "0"], "not a positive number of seconds"),
        (["--interleave", "--isolate", "model"], "does not combine with --isolate model"),
    ],
)
def test_bad_trial_options_are_exit_2(tmp_path, capsys, args, message):
    code, doc = _run(tmp_path, *args)
    assert code == 2 and doc is None
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# -- --interleave -------------------------------------------------------------------------------
def test_interleave_runs_the_trials_in_rotation(tmp_path):
    """In this process (``--isolate none``); forked workers in rotation (the default) are
    tests/test_interleave_workers.py's."""
    out = tmp_path / "i.json"
    code = main(
        [
            *("run", "--in-out", "8-4,12-4,16-4", "--trials", "3", "--warmup", "1"),
            *("--interleave", "--isolate", "none", "-o", str(out)),
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    starts = [e["interference"]["trial_started_at"] for e in doc["configurations"]]
    assert [len(s) for s in starts] == [3, 3, 3]
    order = sorted((t, c) for c, s in enumerate(starts) for t in s)
    assert [c for _, c in order] == [0, 1, 2, 0, 1, 2, 0, 1, 2]  # A1 B1 C1 A2 B2 C2 A3 B3 C3
    assert doc["settings"]["interleave"] is True and doc["settings"]["isolate"] == "none"
    assert [e["status"] for e in doc["configurations"]] == ["ok"] * 3


def test_without_interleave_each_configuration_runs_whole(tmp_path):
    out = tmp_path / "s.json"
    code = main(
        ["run", "--in-out", "8-4,12-4", "--trials", "2", "--isolate", "none", "-o", str(out)]
    )
    assert code == 0
    starts = [
        e["interference"]["trial_started_at"] for e in json.loads(out.read_text())["configurations"]
    ]
    assert max(starts[0]) < min(starts[1])


# -- system check -------------------------------------------------------------------------------
def test_system_check_names_a_busy_process_and_says_what_it_cannot_read(capsys):
    from streambench.cli.system import _sample

    hog = _foreign_hog()
    try:
        time.sleep(0.2)
        busy, other, _steal = _sample()
        assert main(["system", "check"]) == 0
    finally:
        _kill(hog)
    assert any(name.endswith(f"[{hog}]") for name, _share in busy), busy  # named as busy
    assert other is not None and other > 0
    out = capsys.readouterr().out
    for name in ("CPU governor", "turbo boost", "SMT", "thermal throttling", "CPU steal"):
        assert name in out
    assert "what it does:" in out and out.rstrip().endswith("details: streambench system check")
    assert "other busy processes: " in out
    if not os.path.exists("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"):
        assert "CPU governor: not readable here" in out


def test_every_run_starts_with_the_system_line(tmp_path, capsys):
    code, _ = _run(tmp_path, "--trials", "1")
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("streambench run: ")  # the opening line, then the system line
    assert lines[1].startswith("system: ") and "streambench system check" in lines[1]


def test_results_with_the_new_keys_validate_and_damage_is_named(tmp_path):
    from streambench.errors import UsageError
    from streambench.results.validate import validate_document

    code, doc = _run(tmp_path, "--trials", "auto", "--max-trials", "6", "--target-ci", "1000%")
    assert code == 0
    validate_document(json.loads(json.dumps(doc)), "r.json")
    entry = doc["configurations"][0]
    entry["warnings"] = ["fine", 3]
    with pytest.raises(UsageError, match=r"configurations\[0\]\.warnings\[1\] is"):
        validate_document(doc, "r.json")
    entry["warnings"] = []
    entry["interference"]["trials"][0]["other_cpu_share"] = "busy"
    with pytest.raises(UsageError, match=r"interference\.trials\[0\]\.other_cpu_share"):
        validate_document(doc, "r.json")


def test_help_shows_the_trial_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("--trials N|auto", "--target-ci PCT", "(default 5%)", "(default 20%)"):
        assert words in out, words
    assert "--interleave" in out
