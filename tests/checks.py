"""Shared assertions on an example-difficulty run (records, per-example arrays, summary),
used by the driver tests of every dataset."""

import json
import os
import struct
import subprocess
import sys
import tempfile

import matplotlib.image as mpimg
import numpy as np
import pytest

from experiments import difficulty
from lazy_hasty import difficulty as spec_lib
from lazy_hasty.engine import records
from lazy_hasty.analysis import inference, learning_times, plots, progress

FILES = ("config.json", "metrics.jsonl", "per_example.npz", "summary.json", "fig2.png")
PROBE_KEYS = ("sign_similarity", "ntk_alignment", "representation_alignment")


def run(config, workdir):
    difficulty.run(config, str(workdir))
    return {"config": config, "dir": str(workdir),
            "records": records.read_jsonl(os.path.join(workdir, "metrics.jsonl")),
            "npz": dict(np.load(os.path.join(workdir, "per_example.npz"), allow_pickle=False)),
            "summary": json.load(open(os.path.join(workdir, "summary.json")))}


def check_figure(path, draw):
    """The figure file at ``path`` is what ``draw(other_path)`` saves: a driver's figure
    is the drawing of the records it wrote (the drawing itself is checked in
    tests/analysis/test_plots.py). The pixels are compared, not the bytes: two drawings
    of the same data in one process may place an antialiased edge one pixel apart, so
    up to 1 pixel in 10,000 may differ; a figure of other data differs in far more."""
    with tempfile.TemporaryDirectory() as folder:
        again = os.path.join(folder, os.path.basename(path))
        draw(again)
        saved, redrawn = mpimg.imread(path), mpimg.imread(again)
    assert saved.shape == redrawn.shape, f"{path} is not the figure of the records"
    differ = np.any(saved != redrawn, axis=-1).mean()
    assert differ <= 1e-4, f"{path} is not the figure of the records ({differ:.2%} differ)"


def check_difficulty_figure(run, name):
    """``name`` (fig2.png or fig3.png) is Figs. 2-3 of metrics.jsonl, with the spec of
    summary.json."""
    spec = spec_lib.DifficultySpec.from_dict(run["summary"]["spec"])
    names = list(dict.fromkeys(r["regime"] for r in run["records"]))
    check_figure(os.path.join(run["dir"], name), lambda path: plots.plot_difficulty(
        path, run["records"], regimes=names, spec=spec))


def check_files(run):
    for name in FILES:
        assert os.path.getsize(os.path.join(run["dir"], name)) > 0, name
    check_difficulty_figure(run, "fig2.png")
    with open(os.path.join(run["dir"], "config.json")) as f:
        assert json.load(f) == json.loads(json.dumps(run["config"].to_dict()))


def regimes(run):
    return set(run["config"].regimes)


def check_records(run, group_keys):
    recs = run["records"]
    assert {r["regime"] for r in recs} == regimes(run)
    for r in recs:
        assert isinstance(r["step"], int) and r["step"] >= 0
        assert isinstance(r["train_loss"], float) and np.isfinite(r["train_loss"])
        missing = [k for k in group_keys if k not in r]
        assert not missing, missing
        for k in group_keys:
            if k.endswith("/accuracy"):
                assert 0.0 <= r[k] <= 1.0
        assert r["train_loss"] == r["train/all/loss"]
    for regime in regimes(run):
        mine = [r for r in recs if r["regime"] == regime]
        steps = [r["step"] for r in mine]
        assert steps == sorted(set(steps)) and steps[0] == 0
        with_probe = [r for r in mine if PROBE_KEYS[0] in r]
        every = run["config"].probe_every
        assert [i for i, r in enumerate(mine) if all(k in r for k in PROBE_KEYS)] == \
            list(range(0, len(mine), every))
        assert len(with_probe) == len(range(0, len(mine), every))
        for r in with_probe:
            for k in PROBE_KEYS:
                assert -1e-5 <= r[k] <= 1 + 1e-5, (k, r[k])
        for k in PROBE_KEYS:               # the first record is at params0
            assert mine[0][k] == pytest.approx(1.0, abs=1e-5)


def check_per_example(run):
    npz, recs = run["npz"], run["records"]
    names = [str(n) for n in npz["group_names"]]
    bounds = npz["group_bounds"]
    assert bounds[0] == 0 and np.all(np.diff(bounds) > 0)
    for regime in regimes(run):
        correct = npz[f"correct_{regime}"]
        mine = [r for r in recs if r["regime"] == regime]
        assert correct.shape == (len(mine), bounds[-1])
        assert set(np.unique(correct)) <= {0, 1}
        for row, rec in zip(correct, mine):      # group accuracies from the same arrays
            for i, name in enumerate(names):
                assert rec[f"{name}/accuracy"] == pytest.approx(
                    row[bounds[i]:bounds[i + 1]].mean(), abs=1e-6), name
    return names, bounds


def check_scores(run):
    """scores.npz: the train/all group's scores per regime; those that correctness alone
    determines recomputed here from per_example.npz by explicit loops."""
    npz = run["npz"]
    names = [str(n) for n in npz["group_names"]]
    at = names.index("train/all")
    lo, hi = npz["group_bounds"][at], npz["group_bounds"][at + 1]
    with np.load(os.path.join(run["dir"], "scores.npz"), allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    assert str(got.pop("group")) == "train/all"
    for regime in regimes(run):
        correct = npz[f"correct_{regime}"][:, lo:hi]
        for j in range(hi - lo):
            column = correct[:, j]
            events = sum(1 for a, b in zip(column[:-1], column[1:]) if a == 1 and b == 0)
            want = events if column.any() else np.inf
            assert got[f"forgetting_{regime}"][j] == want, (regime, j)
        np.testing.assert_allclose(got[f"correctness_{regime}"], correct.mean(axis=0))
        for score in ("el2n", "grand", "aum", "confidence", "variability"):
            assert np.isfinite(got[f"{score}_{regime}"]).all(), (regime, score)
        assert (0 <= got[f"confidence_{regime}"]).all() and (got[f"confidence_{regime}"] <= 1).all()
        assert (got[f"el2n_{regime}"] <= np.sqrt(2) + 1e-6).all()
        assert (got[f"grand_{regime}"] > 0).all()
        lt = got[f"learning_time_{regime}"]
        learned = np.flatnonzero(correct[-1] == 1)
        assert np.isnan(lt[correct[-1] == 0]).all()
        for j in learned:                     # the record after the last wrong one
            wrong = np.flatnonzero(correct[:, j] == 0)
            assert lt[j] == (wrong[-1] + 1 if len(wrong) else 0), (regime, j)
    return got


def check_summary(run, easy, hard, progress_key, decreasing):
    """summary.json against the statistics recomputed from the records and per-example
    arrays; hastiness and the hard advantage must both be there."""
    summary, npz = run["summary"], run["npz"]
    assert (summary["nonlinear"], summary["linear"]) == tuple(run["config"].compare)
    assert summary["easy_group"] == easy and summary["hard_group"] == hard
    assert summary["spec"]["easy"] == easy and summary["spec"]["hard"] == hard
    assert (summary["spec"]["progress_key"], summary["spec"]["decreasing"]) == (progress_key,
                                                                                decreasing)
    names, bounds = [str(n) for n in npz["group_names"]], npz["group_bounds"]
    idx = lambda g: np.arange(bounds[names.index(g)], bounds[names.index(g) + 1])
    prog = {r: np.array([rec[progress_key] for rec in run["records"] if rec["regime"] == r])
            for r in regimes(run)}
    nl, lin = run["config"].compare
    curves = (prog[nl], npz[f"correct_{nl}"], prog[lin], npz[f"correct_{lin}"])
    seed = run["config"].seed
    value, interval = progress.bootstrap_hastiness(*curves, idx(easy), idx(hard),
                                                   decreasing=decreasing, seed=seed)
    assert summary["hastiness"] == pytest.approx(value, abs=1e-12)
    assert summary["hastiness_interval"] == pytest.approx(list(interval), abs=1e-12)
    value, interval = progress.bootstrap_hard_advantage(*curves, idx(hard),
                                                        decreasing=decreasing, seed=seed)
    assert summary["hard_advantage"] == pytest.approx(value, abs=1e-12)
    assert summary["hard_advantage_interval"] == pytest.approx(list(interval), abs=1e-12)
    for key in ("hastiness", "hard_advantage"):
        lo, hi = summary[f"{key}_interval"]
        assert lo <= summary[key] <= hi and -1 <= summary[key] <= 1
    assert 0 <= summary["fraction_hastier"] <= 1


def check_learning_times(run):
    """learning_times.npz against learning times recomputed from per_example.npz and
    metrics.jsonl, its figure (the drawing of the npz), and summary.json's
    learning_times against the npz."""
    with np.load(os.path.join(run["dir"], "learning_times.npz"), allow_pickle=False) as z:
        times = dict(z)
    spec = spec_lib.DifficultySpec.from_dict(run["summary"]["spec"])
    compare = tuple(run["config"].compare) if len(regimes(run)) > 1 else None
    check_figure(os.path.join(run["dir"], "learning_times.png"),
                 lambda path: plots.plot_learning_times(path, times, spec, compare))
    npz = run["npz"]
    names, bounds = [str(n) for n in npz["group_names"]], npz["group_bounds"]
    ladder = spec.difficulty_ladder()
    assert [str(g) for g in times["ladder"]] == list(ladder)
    assert [str(g) for g in times["group_names"]] == names
    columns = [np.arange(bounds[names.index(g)], bounds[names.index(g) + 1]) for g in ladder]
    np.testing.assert_array_equal(times["example"], np.concatenate(columns))
    np.testing.assert_array_equal(times["rank"], np.repeat(np.arange(len(ladder)),
                                                           [len(c) for c in columns]))
    np.testing.assert_array_equal(times["group"], [names.index(ladder[k]) for k in times["rank"]])
    summary = run["summary"]["learning_times"]
    assert set(summary) == regimes(run) == {str(r) for r in times["regimes"]}
    for regime in regimes(run):
        progress_values = [r[spec.progress_key] for r in run["records"]
                           if r["regime"] == regime]
        want = learning_times.learning_times(npz[f"correct_{regime}"][:, times["example"]],
                                             np.array(progress_values))
        np.testing.assert_array_equal(times[f"time_{regime}"], want.time)
        np.testing.assert_array_equal(times[f"record_index_{regime}"], want.record_index)
        np.testing.assert_array_equal(times[f"censored_{regime}"], want.censored)
        late = np.where(want.censored, np.inf, -want.time if spec.decreasing else want.time)
        got = summary[regime]
        assert got["num_examples"] == len(want.time)
        assert got["num_censored"] == int(want.censored.sum())
        rho = inference.spearman(late, times["rank"])
        assert got["spearman"] == pytest.approx(rho, abs=1e-12)
        assert got["interval"][0] <= got["spearman"] <= got["interval"][1]


def hide_package(patch, package):
    """Makes every import of ``package`` or of its submodules fail (``patch``: a pytest
    MonkeyPatch), as if it were not installed."""
    for name in {package, *(n for n in sys.modules if n.startswith(package + "."))}:
        patch.setitem(sys.modules, name, None)


def _masked_crc32c(data):
    """TFRecord's masked CRC-32C (the mask written out here, the CRC from tensorboardX)."""
    from tensorboardX.crc32c import crc32c
    crc = crc32c(data) & 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path):
    """The ``Event`` protos of one event file, each TFRecord's length and payload checked
    against their masked CRC-32C."""
    from tensorboardX.proto import event_pb2
    with open(path, "rb") as f:
        data = f.read()
    events, pos = [], 0
    while pos < len(data):
        header, (header_crc,) = data[pos:pos + 8], struct.unpack("<I", data[pos + 8:pos + 12])
        (length,) = struct.unpack("<Q", header)
        payload = data[pos + 12:pos + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert header_crc == _masked_crc32c(header) and len(payload) == length
        assert payload_crc == _masked_crc32c(payload)
        events.append(event_pb2.Event.FromString(payload))
        pos += 16 + length
    return events


def read_tensorboard(logdir):
    """``{run: events}``: every event file of each subdirectory, files in name order."""
    return {run: [e for name in sorted(os.listdir(os.path.join(logdir, run)))
                  for e in read_events(os.path.join(logdir, run, name))]
            for run in os.listdir(logdir)}


def check_tensorboard(run):
    """The run's TensorBoard events against its records: per regime a file version, a
    session start at step 0, then one event per record: its step, and every numeric
    value (float32) under its key."""
    from tensorboardX.proto import event_pb2
    events = read_tensorboard(os.path.join(run["dir"], "tensorboard"))
    assert set(events) == regimes(run)
    for regime, evs in events.items():
        mine = [r for r in run["records"] if r["regime"] == regime]
        assert evs[0].file_version == "brain.Event:2" and len(evs) == 2 + len(mine)
        assert evs[1].session_log.status == event_pb2.SessionLog.START and evs[1].step == 0
        for event, rec in zip(evs[2:], mine):
            assert event.step == rec["step"]
            got = {v.tag: v.simple_value for v in event.summary.value}
            assert got == {k: float(np.float32(v)) for k, v in rec.items()
                           if k not in ("regime", "step")}
        assert {"train_loss", "train/all/accuracy", *PROBE_KEYS} <= {
            v.tag for v in evs[2].summary.value}


def check_one_line_error(script, args, tmp_path, message):
    """``script`` with ``args`` (``W`` standing for a workdir under ``tmp_path``) exits
    with code 1 and one stderr line holding ``message``, and writes no workdir."""
    args = [a.replace("W", str(tmp_path / "w")) for a in args]
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(script))))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert not (tmp_path / "w").exists()
