"""Training as the seed paper did it (schedules, K-fold, the recipe in every checkpoint) and the
hardware-aware training's BatchNorm re-estimation and CLI recipe."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from spicecross.errors import UserError
from spicecross.nn.hw_train import reestimate_batchnorm, train_hardware_aware, unwrap, wrap
from spicecross.nn.inference import EvalData, load_eval_data, load_network, run_analog
from spicecross.nn.train import (SCHEDULES, fold_indices, load_checkpoint, lr_scheduler,
                                 pretrained_path, train_model)
from spicecross.surrogate.config import AnalogConfig
from spicecross.surrogate.nonidealities import NonIdealityConfig

from test_nn import _write_cifar


# ---- schedules and folds ---------------------------------------------------------------------
def _lrs(schedule: str, steps: int) -> list[float]:
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_scheduler(opt, schedule, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_follow_their_definitions():
    cos = _lrs("cosine", 8)
    assert cos[0] == 1.0 and all(a > b for a, b in zip(cos, cos[1:]))
    assert cos[4] == pytest.approx(0.5)                               # (1 + cos(π/2))/2
    assert _lrs("constant", 5) == [1.0] * 5
    assert _lrs("step", 8) == pytest.approx([1.0] * 4 + [0.1] * 2 + [0.01] * 2)
    assert set(SCHEDULES) == {"cosine", "constant", "step"}
    with pytest.raises(UserError, match="'linear'"):
        lr_scheduler(torch.optim.Adam([nn.Parameter(torch.zeros(1))]), "linear", 3)


def test_folds_partition_the_split_reproducibly():
    folds = fold_indices(103, 5, seed=7)
    assert [len(f) for f in folds] == [21, 21, 21, 20, 20]
    assert sorted(torch.cat(folds).tolist()) == list(range(103))
    assert all(torch.equal(a, b) for a, b in zip(folds, fold_indices(103, 5, seed=7)))
    assert not torch.equal(folds[0], fold_indices(103, 5, seed=8)[0])
    for bad in (1, 104, 2.5, True):
        with pytest.raises(UserError, match="folds"):
            fold_indices(103, bad, seed=0)


def test_cli_kfold_and_schedule_land_in_the_checkpoint(tmp_path: Path, capsys):
    from spicecross.cli import main

    data = tmp_path / "data"
    _write_cifar(data, "cifar10", n_per_file=24)
    out = tmp_path / "c10.pt"
    rc = main(["train", "cifar10", "--data", str(data), "--epochs", "1", "--seed", "2",
               "--limit", "60", "--folds", "3", "--schedule", "step", "--batch-size", "16",
               "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["folds"] == 3 and len(summary["fold_accuracies"]) == 3
    assert all(0.0 <= a <= 100.0 for a in summary["fold_accuracies"])
    _, meta = load_checkpoint(out)
    assert meta["schedule"] == "step" and meta["optimizer"] == "adam" and meta["folds"] == 3
    assert meta["fold_accuracies"] == pytest.approx(summary["fold_accuracies"], abs=1e-3)
    assert meta["cv_accuracy_mean"] == pytest.approx(sum(meta["fold_accuracies"]) / 3)
    assert meta["recipe"] == ("spicecross train cifar10 --data DIR --epochs 1 --seed 2 "
                              "--batch-size 16 --lr 0.002 --schedule step --folds 3 --limit 60")
    rc = main(["train", "cifar10", "--data", str(data), "--schedule", "warm",
               "--out", str(tmp_path / "x.pt"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "'warm'" in err and len(err.splitlines()) == 1


def test_same_recipe_same_weights_and_folds_leave_the_final_network_alone(tmp_path: Path):
    data = tmp_path / "data"
    _write_cifar(data, "cifar10", n_per_file=16)
    kw = dict(epochs=1, seed=1, batch_size=16, limit=32, progress=False)
    plain = train_model("cifar10", data, out_path=tmp_path / "a.pt", **kw)
    folded = train_model("cifar10", data, out_path=tmp_path / "b.pt", folds=2, **kw)
    a, b = load_checkpoint(tmp_path / "a.pt")[0], load_checkpoint(tmp_path / "b.pt")[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert plain["test_accuracy"] == folded["test_accuracy"] and plain["folds"] is None
    other = train_model("cifar10", data, schedule="constant", **kw)
    assert other["recipe"].endswith("--schedule constant --limit 32")


def test_shipped_weights_say_how_they_were_made():
    _, meta = load_checkpoint(pretrained_path("mnist"))
    assert meta["recipe"] == ("spicecross train mnist --data DIR --epochs 2 --seed 0 "
                              "--batch-size 128 --lr 0.002 --schedule cosine")
    assert (meta["optimizer"], meta["schedule"], meta["folds"]) == ("adam", "cosine", None)
    assert (meta["epochs"], meta["seed"], meta["train_samples"]) == (2, 0, 60000)


# ---- hardware-aware training -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    return load_network("mnist"), load_eval_data("mnist", None, 300, 64)


def _sigma(s: float) -> AnalogConfig:
    return AnalogConfig.build(tile_rows=32, tile_cols=32, calibration_images=32).with_(
        nonideal=NonIdealityConfig(sigma_r_on_ohm=s, sigma_r_off_ohm=s))


def test_batchnorm_reestimation_averages_the_analog_statistics(sample):
    model, data = sample
    cfg = _sigma(100.0)
    x = data.test.tensors[0][:96]
    hw = wrap(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        made = reestimate_batchnorm(hw, cfg, x, data.calibration[:32], batches=4, batch_size=24,
                                    reprogram_every=2, first_programming=0,
                                    gen=torch.Generator().manual_seed(0))
    assert made == 4                                        # two passes
    norms = [m for m in hw.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 4 and m.momentum == 0.1 for m in norms)
    shipped = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    # the analog statistics differ from the digital ones the shipped network carries
    assert max(float((a.running_var - b.running_var).abs().max())
               for a, b in zip(norms, shipped)) > 1e-3
    assert all(torch.isfinite(m.running_mean).all() for m in norms)


@pytest.mark.slow
def test_batchnorm_on_the_evaluation_chip_recovers_sigma_100_accuracy(sample):
    model, full = sample
    cfg = _sigma(100.0)
    x, y = full.test.tensors
    data = EvalData(TensorDataset(x[:150], y[:150]), full.calibration, "first 150")
    train = TensorDataset(x[150:], y[150:])           # statistics from images never evaluated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        before = run_analog(model, cfg, data)["accuracy"]
        trained, info = train_hardware_aware(model, cfg, train, data.calibration[:32],
                                             batch_size=64, reprogram_every=1, max_steps=1,
                                             bn_batches=4, bn_chip_seed=cfg.seed,
                                             bn_calibration=data.calibration)
        after = run_analog(trained, cfg, data)["accuracy"]
        elsewhere = run_analog(trained, cfg.with_(seed=cfg.seed + 1), data)["accuracy"]
    assert info["programmings"] == 1 + 2 and info["bn_chip_seed"] == cfg.seed
    assert after > before + 10.0
    assert after > elsewhere            # calibrated for its chip, not for another draw
    with pytest.raises(ValueError, match="bn_batches"):
        train_hardware_aware(model, cfg, train, data.calibration[:8], bn_batches=-1)


def test_cli_analog_checkpoint_carries_its_recipe(tmp_path: Path, capsys):
    from spicecross.cli import main

    data = tmp_path / "data"
    _write_cifar(data, "cifar10", n_per_file=8)
    init = tmp_path / "init.pt"
    train_model("cifar10", data, epochs=1, limit=8, batch_size=8, out_path=init, progress=False)
    out = tmp_path / "hw.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rc = main(["train", "cifar10", "--data", str(data), "--analog", "--init", str(init),
                   "--tile", "32x32", "--r-wire", "0", "--max-steps", "1", "--limit", "8",
                   "--eval-limit", "4", "--batch-size", "4", "--bn-batches", "1",
                   "--skip-before", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, meta = load_checkpoint(out)
    assert meta["recipe"].startswith("spicecross train cifar10 --data DIR --analog --init ")
    assert "--tile 32x32 --r-wire 0 --limit 8 --max-steps 1 --epochs 2" in meta["recipe"]
    assert meta["recipe"].endswith(f"--bn-batches 1 --bn-mode batch --out {out}")
    tile = json.loads(meta["analog_config"])["tile"]
    assert (tile["rows"], tile["r_wire_wl_ohm"], tile["r_wire_bl_ohm"]) == (32, 0.0, 0.0)
    assert meta["test_accuracy"] == pytest.approx(summary["analog_accuracy_after"], abs=1e-3)
    assert math.isfinite(meta["lr"]) and meta["bn_batches"] == 1
    assert summary["analog_accuracy_before"] is None and summary["bn_on_chip"] is False
    rc = main(["train", "cifar10", "--data", str(data), "--analog", "--folds", "2",
               "--out", str(tmp_path / "y.pt"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--folds" in err and len(err.splitlines()) == 1


def test_frozen_batchnorm_keeps_statistics_and_trains_scale(sample):
    model, data = sample
    cfg = AnalogConfig.build(tile_rows=32, tile_cols=32, calibration_images=32, r_wire_ohm=1.0)
    x, y = data.test.tensors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frozen, info = train_hardware_aware(model, cfg, TensorDataset(x[:64], y[:64]),
                                            data.calibration[:32], batch_size=32,
                                            reprogram_every=2, max_steps=2, bn_mode="frozen")
        batch, _ = train_hardware_aware(model, cfg, TensorDataset(x[:64], y[:64]),
                                        data.calibration[:32], batch_size=32,
                                        reprogram_every=2, max_steps=2, bn_mode="batch")
    assert info["bn_mode"] == "frozen"
    pairs = [(a, b, c) for a, b, c in zip(model.modules(), frozen.modules(), batch.modules())
             if isinstance(a, nn.BatchNorm2d)]
    for shipped, f, b in pairs:
        assert torch.equal(shipped.running_mean, f.running_mean)
        assert torch.equal(shipped.running_var, f.running_var)
        assert not torch.equal(shipped.weight, f.weight)            # scale still trains
        assert not torch.equal(shipped.running_mean, b.running_mean)  # batch mode updates them
    with pytest.raises(ValueError, match="bn_mode"):
        train_hardware_aware(model, cfg, TensorDataset(x[:8], y[:8]), data.calibration[:8],
                             bn_mode="off")
