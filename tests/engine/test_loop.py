"""Minibatch training of one regime against a hand-written SGD loop, data parallelism on
fake CPU devices, the group evaluator and the linearity probe."""

import functools
import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lazy_hasty import linearity, losses, models, ntk, regimes
from lazy_hasty.engine import evaluation, loop, sharding
from lazy_hasty.data.splits import Split
from lazy_hasty.engine.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.engine.schedule import RecordSchedule

N, D, C, BATCH, STEPS, SEED = 64, 4, 3, 16, 20, 3

# Compiling many small programs is this module's cost; its checks are exact relations
# and tolerances on the maths, not the rounding of optimised kernels (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")
from tests import ROOT


# ---------------------------------------------------------------- minibatch order

@pytest.mark.parametrize("n, batch_size", [(64, 16), (50, 7)])
def test_batch_indices_each_epoch_is_a_partial_permutation(n, batch_size):
    per_epoch = n // batch_size
    for epoch in range(3):
        batches = [loop.batch_indices(SEED, epoch * per_epoch + i, n, batch_size)
                   for i in range(per_epoch)]
        assert all(len(b) == batch_size for b in batches)
        flat = np.concatenate(batches)
        assert len(np.unique(flat)) == len(flat) == n - n % batch_size   # disjoint
        assert flat.min() >= 0 and flat.max() < n
        np.testing.assert_array_equal(
            flat, loop.epoch_order(SEED, epoch, n)[:per_epoch * batch_size])


def test_batch_indices_seeded_and_epochs_differ():
    a = [loop.batch_indices(1, s, 64, 16) for s in range(8)]
    b = [loop.batch_indices(1, s, 64, 16) for s in range(8)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(np.concatenate(a[:4]), np.concatenate(a[4:]))   # epoch 0 vs 1
    assert not np.array_equal(a[0], loop.batch_indices(2, 0, 64, 16))    # other seed


# ---------------------------------------------------------------- a tiny problem

def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N + 20, D)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(D, C)), axis=1).astype(np.int32)
    module = models.get_model("mlp", features=(16,), num_outputs=C)
    params0, state = models.init_model(module, jax.random.PRNGKey(0), x[:1])
    groups = {"train/all": (x[:N], y[:N]), "train/first": (x[:10], y[:10]),
              "heldout/all": (x[N:], y[N:])}
    return module, state, params0, x[:N], y[:N], groups


@functools.lru_cache(maxsize=None)
def _train(regime_name, lr=0.5, momentum=0.0, probe=True, eval_batch_size=32,
           device_data_bytes=0):
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    regime = regimes.parse_regime(regime_name)
    evaluator = GroupEvaluator(groups, batch_size=eval_batch_size)
    probe_obj = LinearityProbe(module, state, params0, x[:5]) if probe else None
    hooks = loop.RecordList()
    options = loop.TrainOptions(num_steps=STEPS, batch_size=BATCH, learning_rate=lr,
                                     momentum=momentum, seed=SEED, probe_every=2,
                                     device_data_bytes=device_data_bytes)
    final = loop.train_regime(apply_fn, regime, params0, Split(x, y), options, evaluator,
                                   hooks, probe_obj)
    return dict(final=final, records=hooks.records, correct=hooks.correct, params0=params0,
                apply_fn=apply_fn, regime=regime, x=x, y=y, groups=groups,
                evaluator=evaluator)


def _oracle_sgd(apply_fn, regime, params0, x, y, lr, momentum=0.0):
    """Plain jax.grad heavy-ball SGD on the same minibatches; params before each step."""
    lr = lr / regime.alpha ** 2 if regime.kind == "rescaled" else lr

    def loss_fn(p, xb, yb):
        if regime.kind == "plain":
            out = apply_fn(p, xb)
        elif regime.kind == "linearized":
            out = jax.jvp(lambda q: apply_fn(q, xb), (params0,), (p,))[1]
        else:
            out = regime.alpha * (apply_fn(p, xb) - apply_fn(params0, xb))
        return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(out), yb[:, None], 1))

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    p = regime.init(params0)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    history, batch_losses = [], []
    for step in range(STEPS):
        idx = loop.batch_indices(SEED, step, len(y), BATCH)
        loss, g = grad_fn(p, x[idx], y[idx])
        history.append(p)
        batch_losses.append(float(loss))
        v = jax.tree_util.tree_map(lambda vi, gi: momentum * vi + gi, v, g)
        p = jax.tree_util.tree_map(lambda pi, vi: pi - lr * vi, p, v)
    return p, history, batch_losses


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0])


def _direct_group_metrics(run, params):
    """Per-example loss/correct straight from regime.predict, group by group."""
    if "_predict" not in run:       # one compilation per run and group shape
        run["_predict"] = jax.jit(functools.partial(run["regime"].predict, run["apply_fn"]))
    predict = run["_predict"]
    out, correct = {}, []
    for name, (gx, gy) in run["groups"].items():
        logits = predict(run["params0"], params, gx)
        loss = np.asarray(losses.per_example_loss(logits, gy))
        ok = np.asarray(jnp.argmax(logits, -1) == gy, np.float64)
        out[f"{name}/loss"], out[f"{name}/accuracy"] = loss.mean(), ok.mean()
        correct.append(ok)
    return out, np.concatenate(correct)


@pytest.fixture(scope="module", params=[("alpha=1", 0.5, 0.0), ("alpha=4", 2.0, 0.0),
                                        ("linearized", 0.5, 0.0), ("plain", 0.2, 0.9)],
                ids=lambda p: f"{p[0]}-m{p[2]}")
def trained(request):
    _start_four_devices()
    name, lr, momentum = request.param
    run = _train(name, lr, momentum)
    final, history, batch_losses = _oracle_sgd(run["apply_fn"], run["regime"],
                                               run["params0"], run["x"], run["y"], lr,
                                               momentum)
    return run, final, history, batch_losses


def test_final_params_match_plain_sgd_loop(trained):
    run, final, _, _ = trained
    np.testing.assert_allclose(_flat(run["final"]), _flat(final), atol=1e-6, rtol=1e-6)
    assert not np.allclose(_flat(final), _flat(run["regime"].init(run["params0"])))


def test_one_compiled_step_and_evaluator_serve_every_alpha():
    """Alpha and the learning rate are arguments of the compiled step and evaluator, not
    constants: a second rescaled regime of the network adds no compile (a sweep
    compiles once), and gives what a separately compiled run gives."""
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    evaluator = GroupEvaluator(groups, batch_size=32)
    compiled = lambda: (loop._compiled_step(apply_fn, "sgd", 0.0, None, False,
                                            False)._cache_size(),
                        evaluation._evaluate._cache_size())
    sizes, finals = [], {}
    for name, lr in (("alpha=1", 0.5), ("alpha=4", 2.0)):
        options = loop.TrainOptions(num_steps=STEPS, batch_size=BATCH, learning_rate=lr,
                                         seed=SEED, probe_every=2)
        finals[name, lr] = loop.train_regime(
            apply_fn, regimes.parse_regime(name), params0, Split(x, y), options, evaluator,
            loop.RecordList())
        sizes.append(compiled())
    assert sizes[0][0] > 0 and sizes[1] == sizes[0]
    for (name, lr), final in finals.items():
        np.testing.assert_array_equal(_flat(final), _flat(_train(name, lr)["final"]))


def test_record_steps_follow_the_schedule(trained):
    run, _, _, batch_losses = trained
    schedule = RecordSchedule(STEPS)
    want = [s for s, loss in enumerate(batch_losses) if schedule.should_record(s, loss)]
    got = [r["step"] for r in run["records"]]
    assert got == want and got[0] == 0 and got[-1] == STEPS - 1
    for r in run["records"]:
        assert r["batch_loss"] == pytest.approx(batch_losses[r["step"]], rel=1e-5, abs=1e-6)
        assert r["epoch"] == r["step"] * BATCH // N
        assert r["regime"] == run["regime"].name


def test_record_metrics_match_direct_evaluation(trained):
    run, _, history, _ = trained
    size = sum(len(g[1]) for g in run["groups"].values())
    for rec, ok in zip(run["records"], run["correct"]):
        assert isinstance(rec["step"], int)
        assert {"step", "regime", "epoch", "batch_loss", "train_loss", "train_loss_ema",
                "train/all/loss", "train/all/accuracy", "train/first/loss",
                "heldout/all/accuracy"} <= set(rec)
        assert ok.shape == (size,)
        want, want_ok = _direct_group_metrics(run, history[rec["step"]])
        for key, value in want.items():
            assert rec[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        np.testing.assert_array_equal(ok, want_ok)
        assert rec["train_loss"] == rec["train/all/loss"]


def test_probe_metrics_every_other_record(trained):
    run, _, _, _ = trained
    keys = {"sign_similarity", "ntk_alignment", "representation_alignment"}
    for i, rec in enumerate(run["records"]):
        assert (keys <= set(rec)) == (i % 2 == 0)
        if i % 2 == 0:
            for k in keys:
                assert -1e-6 <= rec[k] <= 1 + 1e-6
    first = run["records"][0]
    for k in keys:      # step 0: the network is params0
        assert first[k] == pytest.approx(1.0, abs=1e-5)
    if run["regime"].kind == "linearized":      # tangent features never move
        for rec in run["records"][::2]:
            for k in keys:
                assert rec[k] == pytest.approx(1.0, abs=1e-5)


def test_group_evaluator_summarize_matches_numpy():
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    regime = regimes.parse_regime("alpha=3")
    params = jax.tree_util.tree_map(lambda a: a + 0.3, params0)
    run = dict(groups=groups, regime=regime, apply_fn=apply_fn, params0=params0)
    want, want_ok = _direct_group_metrics(run, params)
    for batch_size in (7, 512):          # padded batches, one batch
        evaluator = GroupEvaluator(groups, batch_size=batch_size)
        per = evaluator.per_example(apply_fn, regime, params0, params)
        loss, ok = per.loss, per.correct
        assert all(a.shape == (N + 10 + 20,) for a in per)
        np.testing.assert_array_equal(ok, want_ok)
        got = evaluator.summarize(loss, ok)
        assert set(got) == set(want)
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
        assert evaluator.slice("train/first") == slice(N, N + 10)
        # train/first repeats train/all's first 10 examples: evaluated once, copied.
        assert len(evaluator._y) == -(-(N + 20) // evaluator.batch_size) * evaluator.batch_size
        for values in per:
            np.testing.assert_array_equal(values[N:N + 10], values[:10])


def test_group_evaluator_grand_is_each_examples_gradient_norm():
    """GraNd of the score group from the kernel's diagonal equals the norm of each
    example's loss gradient in the regime's trainable parameters."""
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params0)
    evaluator = GroupEvaluator(groups, batch_size=16, score_group="train/first", score_chunk=4)
    xs, ys = groups["train/first"]
    for regime in (regimes.parse_regime("alpha=3"), regimes.parse_regime("linearized")):
        loss = lambda p, i: losses.per_example_loss(
            regime.predict(apply_fn, params0, p, xs[i:i + 1]), ys[i:i + 1])[0]
        want = [float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(
            jax.grad(loss)(params, i))))) for i in range(len(ys))]
        got = evaluator.grand(apply_fn, regime, params0, params)
        np.testing.assert_allclose(got, want, rtol=1e-4)
    assert GroupEvaluator(groups).grand(apply_fn, regime, params0, params) is None
    with pytest.raises(ValueError, match="score group 'train/last' is not one of"):
        GroupEvaluator(groups, score_group="train/last")


def test_distinct_examples_tells_pairs_apart_by_input_and_label():
    x = np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4]], np.float32)
    y = np.array([0, 1, 0, 1, 1])
    first, copies = evaluation.distinct_examples(x, y)
    np.testing.assert_array_equal(first, [0, 1, 3])     # (x0, label 1) is a new pair
    np.testing.assert_array_equal(copies, [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(x[first][copies], x)


def test_non_finite_inputs_raise_naming_regime_and_step():
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    x_bad = x.copy()
    x_bad[:] = np.inf
    hooks = loop.RecordList()
    with pytest.raises(loop.NonFiniteLossError, match=r"alpha=1 at step 0"):
        loop.train_regime(apply_fn, regimes.parse_regime("alpha=1"), params0,
                               Split(x_bad, y), loop.TrainOptions(5, BATCH, 0.1),
                               GroupEvaluator(groups), hooks)
    assert hooks.records == []


def test_divergence_raises_non_finite_loss_error():
    """At lr 1e30 the step-0 update moves the weights to 5e28-2e29 (gradients up to
    about 0.2; float32 is still finite there), so the parameters pass the guard; in
    step 1's forward pass the products of two such layers overflow, the output sums
    add +inf and -inf, and the loss measured at step 1 is NaN."""
    module, state, params0, x, y, groups = _problem()
    apply_fn = models.make_apply_fn(module, state)
    hooks = loop.RecordList()
    recs = hooks.records
    with pytest.raises(loop.NonFiniteLossError) as info:
        loop.train_regime(apply_fn, regimes.parse_regime("plain"), params0, Split(x, y),
                               loop.TrainOptions(STEPS, BATCH, 1e30),
                               GroupEvaluator(groups), hooks)
    assert str(info.value) == ("training diverged: non-finite training loss nan in regime "
                               "plain at step 1; no record from step 1 on")
    err = info.value
    assert (err.regime, err.alpha, err.step, err.what) == ("plain", None, 1, "training loss")
    assert np.isnan(err.value)
    assert [r["step"] for r in recs] == [0]                     # nothing recorded from there
    assert np.isfinite(recs[0]["batch_loss"])
    assert isinstance(info.value, FloatingPointError)


def test_batch_size_errors():
    module, state, params0, x, y, groups = _problem()
    with pytest.raises(ValueError, match="exceeds the 64 training examples"):
        loop.train_regime(models.make_apply_fn(module, state),
                               regimes.parse_regime("plain"), params0, Split(x, y),
                               loop.TrainOptions(1, 65, 0.1), GroupEvaluator(groups),
                               loop.RecordList())
    fake_mesh = types.SimpleNamespace(size=4)
    sharding.check_batch_size(8, fake_mesh)
    with pytest.raises(ValueError, match="batch_size 6 is not divisible by the 4 devices"):
        sharding.check_batch_size(6, fake_mesh)


# ---------------------------------------------------------------- data parallelism

def _dp_main():
    """Run in a subprocess: train two regimes on however many devices JAX sees."""
    out = {"devices": jax.device_count()}
    for name in ("alpha=1", "linearized"):
        run = _train(name, 0.5, 0.0)
        out[name] = {"final": _flat(run["final"]).tolist(),
                     "records": [{k: v for k, v in r.items()} for r in run["records"]],
                     "correct": [c.tolist() for c in run["correct"]]}
    mesh = sharding.data_mesh()
    try:
        sharding.check_batch_size(6, mesh)
        out["check_error"] = None
    except ValueError as err:
        out["check_error"] = str(err)
    module, state, params0, x, y, groups = _problem()
    try:
        loop.train_regime(models.make_apply_fn(module, state),
                               regimes.parse_regime("plain"), params0, Split(x, y),
                               loop.TrainOptions(1, 6, 0.1), GroupEvaluator(groups),
                               loop.RecordList())
        out["train_error"] = None
    except ValueError as err:
        out["train_error"] = str(err)
    print("RESULT " + json.dumps(out))


_DP_PROCESS = []


def _start_four_devices():
    """Starts the 4-device run once; it overlaps with the in-process tests."""
    if not _DP_PROCESS:
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4",
                   PYTHONPATH=ROOT)
        env.pop("XLA_FLAGS", None)
        _DP_PROCESS.append(subprocess.Popen(
            [sys.executable, "-c", "from tests.engine import test_loop as t; t._dp_main()"],
            env=env,
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return _DP_PROCESS[0]


@pytest.fixture(scope="module")
def four_devices():
    proc = _start_four_devices()
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_xla_flags_also_give_four_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.device_count())"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "4"


@pytest.mark.parametrize("name", ["alpha=1", "linearized"])
def test_four_devices_match_one_device(four_devices, name):
    assert four_devices["devices"] == 4
    if jax.device_count() != 1:
        pytest.skip("the in-process reference needs a single device")
    run = _train(name, 0.5, 0.0)
    got = four_devices[name]
    np.testing.assert_allclose(got["final"], _flat(run["final"]), atol=1e-5, rtol=1e-5)
    assert [r["step"] for r in got["records"]] == [r["step"] for r in run["records"]]
    for a, b in zip(got["records"], run["records"]):
        assert set(a) == set(b)
        for key, value in b.items():
            if isinstance(value, str):
                assert a[key] == value
            else:
                assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    for a, b in zip(got["correct"], run["correct"]):
        np.testing.assert_array_equal(a, b)


def test_four_devices_reject_indivisible_batch(four_devices):
    for key in ("check_error", "train_error"):
        assert four_devices[key] is not None, key
        assert "batch_size 6 is not divisible by the 4 devices" in four_devices[key]


# ---------------------------------------------------------------- linearity probe

@pytest.fixture(scope="module")
def probe_setup():
    module = models.get_model("mlp", features=(16, 16), num_outputs=C)
    x = np.random.default_rng(1).normal(size=(6, D)).astype(np.float32)
    params0, state = models.init_model(module, jax.random.PRNGKey(2), x)
    return module, state, params0, x


def test_probe_compiles_once_for_params0_and_trained_params(probe_setup):
    # Training hands the probe params replicated on the data mesh; the reference
    # kernel and features at params0 must come from the same compiled programs, and
    # a second probe of the same network (the next run of a sweep) compiles nothing.
    module, state, params0, x = probe_setup
    compiled = (evaluation._probe_ntk, evaluation._intermediates)
    sizes = [[f._cache_size() for f in compiled]]
    trained = sharding.replicate(_perturb(params0, 0.1), sharding.data_mesh())
    for _ in range(2):
        probe = LinearityProbe(models.get_model("mlp", features=(16, 16), num_outputs=C),
                               state, params0, x)
        assert probe(trained)["ntk_alignment"] < 1 - 1e-6
        sizes.append([f._cache_size() for f in compiled])
    assert all(0 <= b - a <= 1 for a, b in zip(sizes[0], sizes[1])) and sizes[2] == sizes[1]


def _perturb(params, scale, seed=0):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


def test_probe_is_one_at_initialisation(probe_setup):
    module, state, params0, x = probe_setup
    got = LinearityProbe(module, state, params0, x)(params0)
    assert set(got) == {"sign_similarity", "ntk_alignment", "representation_alignment"}
    for key, value in got.items():
        assert value == pytest.approx(1.0, abs=1e-6), key


def test_probe_matches_independent_metrics_after_perturbation(probe_setup):
    module, state, params0, x = probe_setup
    apply_fn = models.make_apply_fn(module, state)
    params = _perturb(params0, 1.0)
    got = LinearityProbe(module, state, params0, x)(params)
    for key, value in got.items():
        assert value < 0.99, key
    ntk_fn = ntk.empirical_ntk_fn(apply_fn)
    k, k0 = ntk_fn(params, x), ntk_fn(params0, x)
    assert got["ntk_alignment"] == pytest.approx(
        float(linearity.kernel_alignment(k, k0)), rel=1e-5)
    # Sign similarity and representation alignment by hand, in numpy.
    pre0, feat0 = models.intermediates(module, state, params0, x)
    pre, feat = models.intermediates(module, state, params, x)
    same = sum(np.sum((np.asarray(a) > 0) == (np.asarray(b) > 0)) for a, b in zip(pre0, pre))
    total = sum(np.asarray(a).size for a in pre0)
    assert got["sign_similarity"] == pytest.approx(same / total, abs=1e-7)
    g0 = np.asarray(feat0, np.float64) @ np.asarray(feat0, np.float64).T
    g1 = np.asarray(feat, np.float64) @ np.asarray(feat, np.float64).T
    want = np.sum(g0 * g1) / (np.linalg.norm(g0) * np.linalg.norm(g1))
    assert got["representation_alignment"] == pytest.approx(want, rel=1e-5)
    # The NTK-vector-product implementation, chunked, measures the same alignment.
    other = LinearityProbe(module, state, params0, x, ntk_implementation="ntvp",
                           ntk_chunk_size=4)(params)
    assert other["ntk_alignment"] == pytest.approx(got["ntk_alignment"], rel=1e-4)


def test_probe_drops_more_for_larger_perturbations(probe_setup):
    module, state, params0, x = probe_setup
    probe = LinearityProbe(module, state, params0, x)
    small, large = probe(_perturb(params0, 0.01)), probe(_perturb(params0, 1.0))
    for key in small:
        assert large[key] < small[key] <= 1 + 1e-6, key


@pytest.mark.parametrize("name", ["alpha=3", "linearized"])
def test_minibatches_gathered_on_device_give_the_host_records(name):
    """The training set kept on the device (indices travel, the step gathers) gives
    bit-identical records and parameters to minibatches gathered on the host."""
    host = _train(name, 0.5, 0.9)
    device = _train(name, 0.5, 0.9, device_data_bytes=1 << 30)
    assert device["records"] == host["records"]
    for a, b in zip(device["correct"], host["correct"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(device["final"]), jax.tree.leaves(host["final"])):
        np.testing.assert_array_equal(a, b)


def _members(name, device_data_bytes, vmapped=True):
    """Two runs of ``name`` (minibatch orders SEED and SEED + 1), trained as one vmapped
    program or one at a time; their records, correctness and final parameters."""
    module, state, params0, x, y, groups = _problem()
    apply_fn, regime = models.make_apply_fn(module, state), regimes.parse_regime(name)
    members = [loop.Member(params0, Split(x, y), GroupEvaluator(groups, batch_size=32),
                           loop.RecordList(), LinearityProbe(module, state, params0, x[:5]),
                           loop.TrainOptions(STEPS, BATCH, 0.5, momentum=0.9, seed=SEED + k,
                                             probe_every=2,
                                             device_data_bytes=device_data_bytes))
               for k in range(2)]
    if vmapped:
        assert loop.train_members(apply_fn, regime, members) == [None, None]
    else:
        for m in members:
            loop.train_regime(apply_fn, regime, m.params0, m.train_set, m.options,
                              m.evaluator, m.hooks, m.probe)
    return [(m.hooks.records, m.hooks.correct) for m in members]


def test_vmapped_members_are_the_runs_one_at_a_time(name="alpha=3"):
    """Runs trained as one vmapped program: each run's own records, to float32 rounding
    (vmapped kernels sum in another order), and bit-identical whether their
    minibatches are gathered on the device or on the host."""
    host, device = _members(name, 0), _members(name, 1 << 30)
    alone = _members(name, 0, vmapped=False)
    for (dev_records, dev_correct), (host_records, host_correct) in zip(device, host):
        assert dev_records == host_records
        for a, b in zip(dev_correct, host_correct):
            np.testing.assert_array_equal(a, b)
    assert host[0][0] != host[1][0]                         # two minibatch orders
    for (got, _), (want, _) in zip(host, alone):
        assert [r["step"] for r in got] == [r["step"] for r in want]
        for a, b in zip(got, want):
            assert a.keys() == b.keys()
            for key, value in b.items():
                assert a[key] == (value if isinstance(value, str)
                                  else pytest.approx(value, rel=1e-5, abs=1e-6)), key
