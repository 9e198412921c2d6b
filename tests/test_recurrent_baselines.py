"""Time-varying baselines: R-CRN, CF-RNN, TS-TARNet, CRN, RMSN and the Causal Transformer.

Each one must beat the zero-effect reference on a small `arctic` world; the parts that make
them what they are get their own checks (gradient reversal, RMSN's weights, causal masks).
The contract itself is checked for every registered estimator in test_estimator_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kgcm
from conftest import fast_params
from kgcm.errors import ConfigError, InputError
from kgcm.estimators._recurrent import (
    EncoderDecoder,
    dann_schedule,
    gaussian_log_density,
    grad_reverse,
    median_split,
    shift_right,
)
from kgcm.estimators.causal_transformer import RelativeCausalAttention
from kgcm.estimators.rmsn import stabilised_log_weights, truncate_and_normalise
from kgcm.metrics import pehe

BASELINES = ("r-crn", "cf-rnn", "ts-tarnet", "crn", "rmsn", "causal-transformer")


@pytest.fixture(autouse=True)
def one_thread():
    """Small recurrent models run faster on one thread (and the CPU is often shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world():
    """A small arctic world: 10 x 10 cells, 180 days, 30-day windows, a quarter held out."""
    from kgcm.sequences import split_units, to_sequences
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(ny=10, nx=10, days=180, seed=1)
    seqs = to_sequences(sim.dataset, window=30)
    train_idx, test_idx = split_units(seqs, test_fraction=0.25, seed=0)
    train, test = seqs.subset(train_idx), seqs.subset(test_idx)
    truth = sim.window_effects(1.5 * test.T, test.cells, test.starts, 30)
    return train, test, truth


@pytest.mark.parametrize("name", BASELINES)
def test_beats_zero_effect_on_arctic(name, world) -> None:
    train, test, truth = world
    est = kgcm.make_estimator(name, seed=0, training={"max_epochs": 5, "progress": False})
    est.fit(train.Y, train.T, X=train.X)
    got = pehe(truth, est.effect(test.X, T0=test.T, T1=1.5 * test.T))
    zero = pehe(truth, np.zeros_like(truth))
    assert got < 0.8 * zero, (name, got, zero)


# ---- causality: the future never reaches the past ---------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_changing_treatment_at_s_leaves_earlier_predictions(name, panel) -> None:
    est = kgcm.make_estimator(name, seed=0, **fast_params(name))
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    X, T = panel["X"], panel["T"]
    s = 6
    T_changed = T.copy()
    T_changed[:, s] += 3.0
    before, after = est.predict(X, T), est.predict(X, T_changed)
    np.testing.assert_allclose(after[:, :s], before[:, :s], atol=1e-9)
    assert np.abs(after[:, s] - before[:, s]).max() > 1e-6  # the treatment does act at s


def test_attention_mask_blocks_the_future() -> None:
    torch.manual_seed(0)
    attn = RelativeCausalAttention(d_model=8, n_heads=2, max_distance=3, dropout=0.0).eval()
    query, memory = torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    changed = memory.clone()
    changed[:, 4:] += 5.0
    out, out_changed = attn(query, memory), attn(query, changed)
    torch.testing.assert_close(out[:, :4], out_changed[:, :4])
    assert not torch.allclose(out[:, 4:], out_changed[:, 4:])


def test_decoder_prediction_reads_no_outcome() -> None:
    torch.manual_seed(0)
    seq = EncoderDecoder(n_inputs=3, hidden=8, rep_dim=4, dropout=0.0).eval()
    x, t = torch.randn(5, 9, 3), torch.randn(5, 9)
    with torch.no_grad():
        phi, _ = seq.encode(x, t, torch.randn(5, 9))
        start = torch.zeros(5, dtype=torch.long)
        # the decoder from k = 0 only reads Phi_0, which does not depend on any outcome
        torch.testing.assert_close(seq.decode(x, t, phi, start)[1], seq.predict(x, t))


# ---- gradient reversal and balancing ----------------------------------------------------


def test_gradient_reversal_flips_gradients() -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.5)
    torch.testing.assert_close(y, x.detach())  # identity forward
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_dann_schedule_ramps_from_zero_to_one() -> None:
    assert dann_schedule(0.0) == 0.0
    assert 0.99 < dann_schedule(1.0) <= 1.0
    assert dann_schedule(0.1) < dann_schedule(0.5)


def test_crn_head_learns_what_the_encoder_hides(panel, monkeypatch) -> None:
    """Balancing by gradient reversal: the treatment loss's gradient trains the treatment heads
    to predict T and, reversed and scaled by λ, trains the encoder to hide T from them."""
    from kgcm.estimators import crn

    est = kgcm.make_estimator("crn", seed=0, **fast_params("crn"))
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    keys = est.history_[-1]
    assert {"train_encoder", "train_decoder", "train_treatment", "train_lambda"} <= set(keys)
    net = est.models_[0].eval()  # no dropout: the three passes below see the same network
    batch = {
        "x": torch.as_tensor(est._covariates(panel["X"]), dtype=torch.float32),
        "t": torch.as_tensor(est.t_scaler_.transform(panel["T"]), dtype=torch.float32),
        "y": torch.as_tensor(est.y_scaler_.transform(panel["Y"]), dtype=torch.float32),
    }
    epoch = est.max_epochs_ // 2
    lam = crn.dann_schedule(est._progress(epoch))
    assert 0 < lam < 1

    def grads(weight: float) -> dict[str, torch.Tensor]:
        est.balance_weight = weight
        net.zero_grad()
        with torch.random.fork_rng():  # the decoder's random start steps: the same each pass
            torch.manual_seed(0)
            loss, _ = est._loss_fn(net)(batch, epoch)
        loss.backward()
        return {
            k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in net.named_parameters()
        }

    none = grads(0.0)
    reversed_ = grads(1.0)
    monkeypatch.setattr(crn, "grad_reverse", lambda x, scale=1.0: x)
    plain = grads(1.0)  # the same treatment loss, its gradient not reversed
    heads = [k for k in none if k.startswith(("enc_treatment.", "dec_treatment."))]
    encoder = [k for k in none if k.startswith("seq.encoder.")]
    assert heads and encoder
    for k in heads:  # the heads descend the treatment loss
        assert plain[k].abs().max() > 0
        torch.testing.assert_close(reversed_[k] - none[k], plain[k] - none[k])
    moved = 0.0
    for k in encoder:  # the encoder ascends it, λ times as strongly
        torch.testing.assert_close(
            reversed_[k] - none[k], -lam * (plain[k] - none[k]), rtol=1e-4, atol=1e-7
        )
        moved += float((plain[k] - none[k]).abs().max())
    assert moved > 0


def test_ct_confusion_leaves_the_head_alone(panel) -> None:
    """The CDC term moves the representation, never the treatment head's weights: the head's
    gradient from the full loss equals that of its own likelihood term alone."""
    from kgcm.estimators.causal_transformer import CausalTransformer

    est = CausalTransformer(
        seed=0, **{**fast_params("causal-transformer"), "confusion_weight": 5.0}
    )
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    net, head = est.models_[0], est.models_[0].treatment_head
    gen = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(4, 6, 3, generator=gen), "t": torch.randn(4, 6, generator=gen)}
    batch["y"] = torch.randn(4, 6, generator=gen)
    net.zero_grad()
    loss, parts = est._loss_fn(net)(batch, est.max_epochs_ - 1)
    loss.backward()
    assert {"outcome", "treatment", "confusion", "alpha", "total"} <= set(parts)
    assert parts["alpha"] > 0
    full = [p.grad.clone() for p in head.parameters()]
    net.zero_grad()
    with torch.no_grad():
        phi, _ = net(batch["x"], batch["t"], batch["y"])
    (-gaussian_log_density(batch["t"], *head(phi)).mean()).backward()
    for a, b in zip(full, (p.grad for p in head.parameters()), strict=True):
        torch.testing.assert_close(a, b)


def test_ct_validates_on_the_rollout_it_is_scored_on() -> None:
    """Early stopping reads the factual MSE of the whole-window rollout (the prediction effects
    are made of) on the held-out units, not the teacher-forced fit: the kept weights' rollout
    MSE, recomputed through ``predict``'s path on the validation split, is the best recorded
    ``val_loss``, and the teacher-forced MSE of the same weights on the same units is not.
    The outcome is persistent (AR(1)), so the observed past outcome is worth reading and the
    two losses differ."""
    from kgcm.estimators.causal_transformer import CausalTransformer
    from kgcm.estimators.training import TrainingConfig, validation_split

    rng = np.random.default_rng(0)
    T = rng.normal(size=(60, 12))
    Y = np.zeros_like(T)
    for s in range(12):  # a few steps only: the loop builds the test data
        Y[:, s] = (0.9 * Y[:, s - 1] if s else rng.normal(size=60)) + T[:, s]
        Y[:, s] += 0.5 * rng.normal(size=60)
    training = {"max_epochs": 8, "min_delta": 0.0, "learning_rate": 1e-2, "progress": False}
    est = CausalTransformer(seed=0, **{**fast_params("causal-transformer"), "training": training})
    est.fit(Y, T)
    val, _ = validation_split(len(Y), TrainingConfig.coerce(training), seed=0)
    val = val.numpy()
    assert 0 < len(val) < len(Y)
    y = est.y_scaler_.transform(Y[val])
    rollout = float(np.mean((est.y_scaler_.transform(est.predict(None, T[val])) - y) ** 2))
    with torch.no_grad():
        _, y_tf = est.models_[0](
            torch.as_tensor(est._covariates(np.zeros((len(val), 12, 0))), dtype=torch.float32),
            torch.as_tensor(est.t_scaler_.transform(T[val]), dtype=torch.float32),
            torch.as_tensor(y, dtype=torch.float32),
        )
    teacher_forced = float(np.mean((y_tf.numpy() - y) ** 2))
    best = min(h["val_loss"] for h in est.history_)
    assert rollout == pytest.approx(best, rel=1e-5)
    assert teacher_forced < 0.8 * best, (teacher_forced, best)


def test_paper_baselines_switches(panel) -> None:
    for name, head in (
        ("r-crn", "adversarial"),
        ("cf-rnn", "auxiliary"),
        ("ts-tarnet", "detached"),
    ):
        est = kgcm.make_estimator(name, seed=0, **fast_params(name))
        assert est.treatment_head == head
    est = kgcm.make_estimator("r-crn", seed=0, **{**fast_params("r-crn"), "mmd_weight": 0.0})
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    keys = {k.removeprefix("train_") for k in est.history_[0]}
    assert "mmd" not in keys and {"outcome", "treatment"} <= keys
    tar = kgcm.make_estimator("ts-tarnet", seed=0, **fast_params("ts-tarnet"))
    tar.fit(panel["Y"], panel["T"], X=panel["X"])
    assert len(tar.models_[0].heads) == 2


# ---- RMSN's stabilised weights ----------------------------------------------------------


def test_stabilised_weights_have_mean_one_with_true_densities() -> None:
    """SW = prod f(T | T_past) / f(T | H): expectation 1 when both densities are right."""
    gen = torch.Generator().manual_seed(0)
    n, steps = 200_000, 3
    u = torch.randn(n, steps, generator=gen)  # an observed confounder per step
    t = 0.6 * u + 0.8 * torch.randn(n, steps, generator=gen)  # marginal N(0, 1)
    log_num = gaussian_log_density(t, torch.zeros_like(t), torch.zeros_like(t))
    log_den = gaussian_log_density(t, 0.6 * u, torch.full_like(t, np.log(0.64)))
    log_w = stabilised_log_weights(log_num - log_den)
    raw = torch.exp(log_w)
    assert abs(float(raw[:, 0].mean()) - 1.0) < 0.02
    assert abs(float(raw[:, -1].mean()) - 1.0) < 0.1
    bounds = tuple(np.percentile(log_w.numpy(), [1, 99]))
    w = truncate_and_normalise(log_w, bounds)
    assert torch.isfinite(w).all() and (w > 0).all()
    assert abs(float(w.mean()) - 1.0) < 1e-5


def test_stabilised_weights_from_a_start_step() -> None:
    log_ratio = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    out = stabilised_log_weights(log_ratio, torch.tensor([2]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.3, 0.7]]))
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    w = truncate_and_normalise(out, (-1.0, 0.5), mask)
    assert w[0, :2].abs().sum() == 0 and abs(float(w.sum()) - 2.0) < 1e-6


def test_rmsn_weights_are_finite_positive_and_stabilised(panel) -> None:
    est = kgcm.make_estimator("rmsn", seed=0, **fast_params("rmsn"))
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    stats = est.weight_stats_[0]
    assert np.isfinite(list(stats.values())).all()
    assert stats["min"] > 0 and stats["max"] < np.inf
    assert 0 < stats["ess_fraction"] <= 1
    low, high = est.weight_bounds_[0]
    assert low < high
    # weights recomputed from the fitted propensity networks: mean 1 after stabilisation
    net = est.models_[0]
    x = torch.as_tensor(est.x_scaler_.transform(panel["X"]), dtype=torch.float32)
    t = torch.as_tensor(est.t_scaler_.transform(panel["T"]), dtype=torch.float32)
    y = torch.as_tensor(est.y_scaler_.transform(panel["Y"]), dtype=torch.float32)
    with torch.no_grad():
        log_num, log_den = net.propensity.log_densities(x, t, y)
    w = truncate_and_normalise(stabilised_log_weights(log_num - log_den), (low, high))
    assert torch.isfinite(w).all() and (w > 0).all()
    assert abs(float(w.mean()) - 1.0) < 1e-5
    assert {"train_numerator", "train_denominator"} <= set(est.propensity_histories_[0][0])


# ---- settings, ensembles, helpers ------------------------------------------------------


def test_ensemble_gives_member_spread(panel) -> None:
    est = kgcm.make_estimator("cf-rnn", seed=0, **{**fast_params("cf-rnn"), "n_ensemble": 2})
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T, X = panel["T"], panel["X"]
    lo, hi = est.effect_interval(X, T0=T, T1=T + 1, alpha=0.1)
    assert lo.shape == T.shape and np.all(lo <= hi) and np.any(lo < hi)
    single = kgcm.make_estimator("cf-rnn", seed=0, **fast_params("cf-rnn"))
    single.fit(panel["Y"], panel["T"], X=panel["X"])
    # the class tag says point effects; the fitted ensemble says otherwise
    assert est.gives_intervals() and not single.gives_intervals()
    with pytest.raises(NotImplementedError, match="point effects only"):
        single.effect_interval(X, T0=T, T1=T + 1)


def test_no_covariates(panel) -> None:
    for name in BASELINES:
        est = kgcm.make_estimator(name, seed=0, **fast_params(name)).fit(panel["Y"], panel["T"])
        assert est.effect(None, T0=panel["T"], T1=panel["T"] + 1).shape == panel["T"].shape


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("r-crn", {"cell": "lstn"}, "Did you mean 'lstm'"),
        ("ts-tarnet", {"outcome_head": "two_head"}, "Did you mean 'two-head'"),
        ("cf-rnn", {"treatment_head": "adversary"}, "Did you mean 'adversarial'"),
        ("cf-rnn", {"hidden": 0}, "hidden must be an integer >= 1; got 0"),
        ("r-crn", {"mmd_weight": -1.0}, "mmd_weight must be a finite number >= 0"),
        ("crn", {"horizon": 0}, "horizon must be an integer >= 1"),
        ("rmsn", {"clip_percentiles": (99, 1)}, "clip_percentiles must be two percentiles"),
        ("causal-transformer", {"d_model": 10, "n_heads": 4}, "multiple of n_heads"),
        ("crn", {"dropout": 1.0}, "dropout must be below 1"),
    ],
)
def test_config_errors(name, params, message, panel) -> None:
    est = kgcm.make_estimator(name, seed=0, **{**fast_params(name), **params})
    with pytest.raises(ConfigError, match=message):
        est.fit(panel["Y"], panel["T"], X=panel["X"])


def test_constant_treatment_is_refused(panel) -> None:
    with pytest.raises(InputError, match="treatment T is constant"):
        median_split(np.ones((3, 4)))
    est = kgcm.make_estimator("crn", seed=0, **fast_params("crn"))
    with pytest.raises(InputError, match="treatment T is constant"):
        est.fit(panel["Y"], np.ones_like(panel["T"]), X=panel["X"])


def test_shift_right() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(shift_right(a), torch.tensor([[0.0, 1.0, 2.0]]))
