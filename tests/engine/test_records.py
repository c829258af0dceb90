"""Run records: log-spaced steps, JSON lines, npz, atomic writes."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty.engine import records


@pytest.mark.parametrize("num_steps, num", [(1, 100), (2, 100), (7, 100), (100, 100),
                                            (2_000, 100), (30_000, 100), (30_000, 20)])
def test_log_spaced_steps_basic_properties(num_steps, num):
    steps = records.log_spaced_steps(num_steps, num)
    assert np.issubdtype(steps.dtype, np.integer)
    assert steps[0] == 0 and steps[-1] == num_steps - 1
    assert np.all(np.diff(steps) > 0)                    # strictly increasing => unique
    assert steps.min() >= 0 and steps.max() <= num_steps - 1
    assert len(steps) <= max(num, 1)
    if num_steps <= 10:                                  # very short runs: every step
        np.testing.assert_array_equal(steps, np.arange(num_steps))


def test_log_spaced_steps_are_log_spaced():
    num_steps, num = 30_000, 100
    steps = records.log_spaced_steps(num_steps, num)
    # Beyond the integer-rounding regime, consecutive (step + 1) ratios are the
    # geometric ratio num_steps ** (1 / (num - 1)).
    ratio = num_steps ** (1.0 / (num - 1))
    big = steps[steps >= 1_000] + 1
    r = big[1:] / big[:-1]
    np.testing.assert_allclose(r, ratio, rtol=2e-3)
    # Roughly half the points sit below sqrt(num_steps) (log-uniform), not 1%.
    frac_low = np.mean(steps + 1 <= math.sqrt(num_steps))
    assert 0.3 < frac_low < 0.55
    assert len(steps) > 0.8 * num


def test_log_spaced_steps_rejects_nonpositive():
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        records.log_spaced_steps(0)


def test_jsonl_roundtrip_numpy_scalars_and_nan(tmp_path):
    path = str(tmp_path / "sub" / "metrics.jsonl")       # parent created on write
    rows = [
        {"step": np.int64(3), "regime": "alpha=1", "train_loss": np.float32(0.25),
         "q": np.float64(np.nan), "inf": float("inf"), "arr": np.array([1.5, np.nan]),
         "jax": jnp.asarray(2.0), "tup": (1, np.int32(2)), "nested": {"x": np.float32(-1)}},
        {"step": 4, "regime": "linearized", "train_loss": float("nan")},
    ]
    records.write_jsonl(path, rows)
    text = open(path).read()
    assert text.count("\n") == 2 and "NaN" not in text and "Infinity" not in text
    back = records.read_jsonl(path)
    assert back == [
        {"step": 3, "regime": "alpha=1", "train_loss": 0.25, "q": None, "inf": None,
         "arr": [1.5, None], "jax": 2.0, "tup": [1, 2], "nested": {"x": -1.0}},
        {"step": 4, "regime": "linearized", "train_loss": None},
    ]
    assert type(back[0]["step"]) is int
    # Every line is strict JSON.
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


def test_write_json_is_strict_json(tmp_path):
    path = str(tmp_path / "config.json")
    records.write_json(path, {"b": (1, 2), "a": np.float32(0.5), "c": np.nan})
    assert json.load(open(path)) == {"a": 0.5, "b": [1, 2], "c": None}


def test_write_npz_loads_without_pickle(tmp_path):
    path = str(tmp_path / "fig.npz")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    records.write_npz(path, a=a, b=jnp.arange(3), t=[0.5, 0.4])
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["a", "b", "t"]
        np.testing.assert_array_equal(z["a"], a)
        assert z["a"].dtype == np.float32
        np.testing.assert_array_equal(z["b"], [0, 1, 2])
        np.testing.assert_array_equal(z["t"], [0.5, 0.4])


def test_atomic_write_failure_leaves_nothing(tmp_path):
    path = str(tmp_path / "out.txt")

    def writer(f):
        f.write("half a file")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        records.atomic_write(path, writer)
    assert os.listdir(tmp_path) == []                   # no file, no temporary


def test_atomic_write_failure_keeps_previous_version(tmp_path):
    path = str(tmp_path / "out.txt")
    records.atomic_write(path, lambda f: f.write("old"))
    with pytest.raises(KeyboardInterrupt):
        records.atomic_write(path, lambda f: (f.write("new"), (_ for _ in ()).throw(
            KeyboardInterrupt())))
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_success_mode_and_binary(tmp_path):
    path = str(tmp_path / "b.bin")
    records.atomic_write(path, lambda f: f.write(b"\x00\x01"), mode="wb")
    assert open(path, "rb").read() == b"\x00\x01"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert os.listdir(tmp_path) == ["b.bin"]


def test_write_npz_failure_leaves_nothing(tmp_path):
    path = str(tmp_path / "bad.npz")

    class Exploding:
        def __array__(self, *a, **k):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError):
        records.write_npz(path, ok=np.zeros(2), bad=Exploding())
    assert os.listdir(tmp_path) == []


def test_truncate_jsonl_keeps_prefix_and_drops_torn_line(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    for k in range(5):
        line = records.jsonl_line({"step": k, "x": 0.1 * k})
        assert line == json.dumps({"step": k, "x": 0.1 * k}, sort_keys=True) + "\n"
        records.append_line(path, line)
    whole = open(path).read()
    with open(path, "a") as f:
        f.write('{"step": 5, "x"')                       # torn by a crash
    kept, dropped, torn = records.truncate_jsonl(path, 3, rewrite=False)
    assert open(path).read().endswith('"x"')               # rewrite=False only reads
    kept, dropped, torn = records.truncate_jsonl(path, 3)
    assert (dropped, torn) == (2, True)
    assert "".join(kept) == open(path).read() == "".join(whole.splitlines(True)[:3])
    assert [r["step"] for r in records.read_jsonl(path)] == [0, 1, 2]
    inode = os.stat(path).st_ino
    assert records.truncate_jsonl(path, 3)[1:] == (0, False)
    assert os.stat(path).st_ino == inode                   # nothing to drop: not rewritten
    with pytest.raises(ValueError, match="holds 3 complete line"):
        records.truncate_jsonl(path, 4)
    with open(path, "a") as f:
        f.write("not json\n")
    with pytest.raises(ValueError, match="line 4 is not valid JSON"):
        records.truncate_jsonl(path, 4)
    with pytest.raises(ValueError, match="must end in a newline"):
        records.append_line(path, "{}")


def test_save_figure_is_atomic(tmp_path):
    import matplotlib.pyplot as plt
    from lazy_hasty.analysis import plots
    path = str(tmp_path / "fig.png")
    fig = plt.figure()
    plots.save_figure(fig, path, dpi=20)
    with open(path, "rb") as f:
        first = f.read()
    assert first.startswith(b"\x89PNG")
    bad = str(tmp_path / "fig.notaformat")
    with pytest.raises(ValueError):
        plots.save_figure(fig, bad, dpi=20)
    plt.close(fig)
    assert sorted(os.listdir(tmp_path)) == ["fig.png"]     # no partial or temporary file
    assert open(path, "rb").read() == first
