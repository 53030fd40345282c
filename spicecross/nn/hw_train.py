"""Hardware-aware training: fine-tune a network through the crossbar surrogate's forward path.

Every ``nn.Conv2d``/``nn.Linear`` is wrapped in a :class:`HardwareAwareLayer` that holds the
trainable digital layer and an analog copy of it (``AnalogConv2d``/``AnalogLinear``: mapping,
IR-drop compensation if configured, finite states, variability, stuck-at faults, wires, DAC,
ADC, scaling back — the very layers inference uses). The forward value is the analog layer's;
the gradient is the digital layer's (straight-through estimator)::

    y = y_digital(W) + (y_analog(W_prog) − y_digital(W_prog)).detach()

where ``W_prog`` are the weights last programmed. Every ``reprogram_every`` batches the current
weights are programmed again, with a fresh device draw (``seed`` advances, so variability and
stuck-at faults are re-sampled at every programming: ``reprogram_every=1`` samples them per
batch), and the converters are re-calibrated on the calibration images, layer by layer through
the analog network. Between programmings the analog error of the last programming is carried
over (the first line above). With ``bn_mode="batch"`` (default) BatchNorm layers train on the
analog activations with batch statistics; with ``bn_mode="frozen"`` they run as at inference
(running statistics fixed, scale and shift trained). After the last step ``bn_batches`` > 0
re-estimates the running statistics (no gradient, the cumulative average over the batches),
so they are those of the final weights as programmed rather than a moving average over weights
that kept changing: on fresh draws on the ``reprogram_every`` rhythm, or on one chip
(``bn_chip_seed``). Under strong device variability the second matters: batch statistics
normalise away each draw's channel gains during training, which fixed statistics at inference
cannot, and on MNIST with σ = 100 Ω statistics from other draws left the accuracy near the
untrained network's while statistics measured on the evaluation chip recovered it (README).

The result is a plain network (the digital modules with the trained weights) whose checkpoint
loads like any other; evaluate it with ``spicecross infer --weights`` under the same
configuration (a different ``--seed`` tests it on devices it never saw — unless its BatchNorm
statistics were measured on one chip, ``bn_on_chip``: then it is calibrated for that draw, as
each programmed chip would be, and another draw needs its own calibration).
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..surrogate.config import AnalogConfig
from .analog import AnalogConv2d, AnalogLinear
from .calibrator import fit_calibrations

__all__ = ["BN_MODES", "HardwareAwareLayer", "reestimate_batchnorm", "train_analog",
           "train_hardware_aware", "unwrap", "wrap"]


class HardwareAwareLayer(nn.Module):
    """A digital Conv2d/Linear (trainable) with its programmed analog copy (forward value)."""

    def __init__(self, digital: nn.Module, layer_index: int) -> None:
        super().__init__()
        self.digital = digital
        self.layer_index = layer_index
        self.analog: AnalogConv2d | AnalogLinear | None = None

    def reprogram(self, config: AnalogConfig) -> None:
        """Program the current weights onto tiles per ``config`` (calibrate before use)."""
        cls = AnalogConv2d if isinstance(self.digital, nn.Conv2d) else AnalogLinear
        self.analog = cls(self.digital, config, self.layer_index)

    def forward(self, x: Tensor) -> Tensor:
        y = self.digital(x)
        if self.analog is None:
            return y
        with torch.no_grad():
            y_analog = self.analog(x)
            y_prog = self.analog._add_bias(self.analog._digital(x))
            if isinstance(self.analog, AnalogLinear):
                y_prog = y_prog.reshape(y_analog.shape)
        return y + (y_analog - y_prog).detach()


def wrap(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv2d/Linear in a :class:`HardwareAwareLayer`."""
    model = copy.deepcopy(model)
    index = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.endswith(".digital"):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, HardwareAwareLayer(module, index))
            index += 1
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network: every :class:`HardwareAwareLayer` replaced by its digital layer."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, HardwareAwareLayer):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, module.digital)
    return model


#: How BatchNorm layers run during hardware-aware training (module doc).
BN_MODES = ("batch", "frozen")


def _train_mode(model: nn.Module, bn_mode: str) -> None:
    """Training mode, with BatchNorm layers in eval mode for ``bn_mode="frozen"``."""
    model.train()
    if bn_mode == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _program(model: nn.Module, config: AnalogConfig, calibration: Tensor) -> None:
    """Program every layer's current weights and calibrate the converters (no aging)."""
    for m in model.modules():
        if isinstance(m, HardwareAwareLayer):
            m.reprogram(config)
    was_training = model.training
    fit_calibrations(model, calibration)
    if config.compat == "memtorch":
        from .calibrator import tune_model
        tune_model(model, config.seed)
    model.train(was_training)


def reestimate_batchnorm(hw: nn.Module, config: AnalogConfig, images: Tensor,
                         calibration: Tensor, batches: int, batch_size: int,
                         reprogram_every: int, first_programming: int, gen: torch.Generator,
                         chip_seed: int | None = None, passes: int = 2) -> int:
    """Re-estimate every BatchNorm's running statistics of the wrapped network ``hw`` as the
    cumulative average over ``batches`` random batches of ``images`` through the analog path,
    programming the weights every ``reprogram_every`` batches (draw ``config.seed + 1000 +
    first_programming + k``) — or, with ``chip_seed``, onto the devices of that one draw (a
    chip's statistics measured after programming it, as its digital BatchNorm would be
    calibrated).

    The converters are calibrated (in eval mode, i.e. with the running statistics) when the
    weights are programmed, and the statistics depend on the converter ranges, so this runs
    ``passes`` times: program and calibrate with the statistics so far, then reset them and
    measure them anew. Returns the programmings made."""
    norms = [m for m in hw.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    programmings = 0
    try:
        for _ in range(passes):
            for b in range(batches):
                if (b == 0 if chip_seed is not None else b % reprogram_every == 0):
                    seed = (int(chip_seed) if chip_seed is not None
                            else config.seed + 1000 + first_programming + programmings)
                    _program(hw, config.with_(seed=seed), calibration)
                    programmings += 1
                if b == 0:
                    for m in norms:
                        m.reset_running_stats()
                        m.momentum = None                # cumulative moving average
                hw.train()
                idx = torch.randint(0, len(images), (batch_size,), generator=gen)
                with torch.no_grad():
                    hw(images[idx])
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    return programmings


def train_hardware_aware(model: nn.Module, config: AnalogConfig, train_set: TensorDataset,
                         calibration: Tensor, epochs: int = 1, batch_size: int = 128,
                         lr: float = 5e-4, reprogram_every: int = 10, seed: int = 0,
                         max_steps: int | None = None, progress: bool = False,
                         bn_batches: int = 0, bn_mode: str = "batch",
                         bn_chip_seed: int | None = None, bn_calibration: Tensor | None = None
                         ) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune ``model`` through the analog forward path of ``config`` (module doc).

    Adam at ``lr`` with cosine decay, cross-entropy, batches shuffled from ``seed``;
    programming ``k`` uses ``config.seed + 1000 + k`` (device draws apart from the evaluation
    seed). ``max_steps`` stops early (quick runs). ``bn_batches`` > 0 re-estimates the
    BatchNorm statistics afterwards (:func:`reestimate_batchnorm`; with ``bn_chip_seed`` on
    that one chip, whose converters are calibrated on ``bn_calibration``, default
    ``calibration``). Returns the plain trained network (eval mode) and a summary (steps,
    programmings, seconds, final running loss)."""
    if reprogram_every < 1:
        raise ValueError(f"reprogram_every must be ≥ 1, got {reprogram_every!r}")
    if bn_batches < 0:
        raise ValueError(f"bn_batches must be ≥ 0, got {bn_batches!r}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bad bn_mode {bn_mode!r}: expected one of {', '.join(BN_MODES)}")
    hw = wrap(model)
    images, labels = train_set.tensors
    n = len(labels)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    total = total if max_steps is None else min(max_steps, total)
    params = [p for p in hw.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    step, programmings, running = 0, 0, float("nan")
    _train_mode(hw, bn_mode)
    while step < total:
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            if step % reprogram_every == 0:
                _program(hw, config.with_(seed=config.seed + 1000 + programmings), calibration)
                programmings += 1
                _train_mode(hw, bn_mode)
            idx = order[b * batch_size:(b + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(hw(images[idx]), labels[idx])
            loss.backward()
            opt.step()
            sched.step()
            running = loss.item() if step == 0 else 0.95 * running + 0.05 * loss.item()
            if progress and step % 20 == 0:
                print(f"step {step}/{total} loss {running:.4f}", flush=True)
            step += 1
    if bn_batches:
        if progress:
            print(f"re-estimating BatchNorm statistics on {bn_batches} batches", flush=True)
        programmings += reestimate_batchnorm(
            hw, config, images, calibration if bn_calibration is None else bn_calibration,
            bn_batches, batch_size, reprogram_every, programmings, gen, bn_chip_seed)
    trained = unwrap(hw)
    trained.eval()
    return trained, {"steps": step, "programmings": programmings, "loss": running,
                     "seconds": time.perf_counter() - t0, "reprogram_every": reprogram_every,
                     "bn_batches": bn_batches, "bn_mode": bn_mode, "bn_chip_seed": bn_chip_seed,
                     "config": config.to_dict()}


def train_analog(name: str, data_root, config: AnalogConfig, out_path=None, init=None,
                 epochs: int = 1, batch_size: int = 128, lr: float = 5e-4,
                 reprogram_every: int = 20, max_steps: int | None = None, seed: int = 0,
                 limit: int | None = None, eval_limit: int | None = None,
                 calibration_images: int = 64, progress: bool = False, bn_batches: int = 0,
                 bn_mode: str = "batch", bn_on_chip: bool = False,
                 recipe: str | None = None, skip_before: bool = False) -> dict[str, Any]:
    """``spicecross train NAME --analog``: fine-tune the network ``init`` (a checkpoint; MNIST
    defaults to the shipped weights) through ``config``'s analog path, report its analog
    accuracy on the test split before and after (at ``config.seed``, devices never drawn in
    training), and write the trained network's checkpoint to ``out_path`` with how it was made
    (``recipe``: the command line, the analog configuration, the training settings).

    ``bn_on_chip``: the BatchNorm statistics are measured after training on the evaluation
    chip itself (the draw ``config.seed``, its converters calibrated on the evaluation's
    calibration images, training images through it), as a chip's digital BatchNorm is
    calibrated once it has been programmed; test images are never used. The network is then
    calibrated for that chip, so its accuracy on another draw (``config.seed + 1``, not
    re-calibrated) is reported beside it. ``skip_before`` leaves out the accuracy before
    training (``None``)."""
    from ..threads import limited_threads, threads_for
    from .datasets import load_dataset
    from .inference import EvalData, load_network, run_analog
    from .train import save_checkpoint

    if bn_on_chip and bn_batches < 1:
        raise ValueError("bn_on_chip needs bn_batches ≥ 1 (the batches it measures on the chip)")
    model = load_network(name, init)
    train_set = load_dataset(name, data_root, train=True, limit=limit)
    test_set = load_dataset(name, data_root, train=False, limit=eval_limit)
    cal = train_set.tensors[0][:calibration_images]
    evaluation = EvalData(test_set, train_set.tensors[0][:config.calibration_images],
                          f"{name} test split")
    with limited_threads(threads_for()):
        before = None if skip_before else run_analog(model, config, evaluation)["accuracy"]
        trained, info = train_hardware_aware(
            model, config, train_set, cal, epochs, batch_size, lr, reprogram_every, seed,
            max_steps, progress, bn_batches, bn_mode,
            bn_chip_seed=config.seed if bn_on_chip else None,
            bn_calibration=evaluation.calibration if bn_on_chip else None)
        after = run_analog(trained, config, evaluation)["accuracy"]
        other = (run_analog(trained, config.with_(seed=config.seed + 1), evaluation)["accuracy"]
                 if bn_on_chip else None)
    summary = {"model": name, "seed": int(seed), "epochs": int(epochs), "analog": True,
               "analog_accuracy_before": before, "analog_accuracy_after": after,
               "bn_on_chip": bool(bn_on_chip), "analog_accuracy_other_chip": other,
               "test_samples": len(test_set), "train_samples": len(train_set),
               "train_steps": info["steps"], "programmings": info["programmings"],
               "seconds": info["seconds"], "reprogram_every": reprogram_every,
               "bn_batches": bn_batches, "bn_mode": bn_mode, "batch_size": int(batch_size),
               "lr": float(lr),
               "schedule": "cosine", "optimizer": "adam", "out": None}
    if out_path is not None:
        save_checkpoint(trained, {**summary, "test_accuracy": after}, out_path,
                        analog_config=config.to_json(), init=str(init) if init else "shipped",
                        recipe=recipe or "train_analog() from Python", limit=limit,
                        max_steps=max_steps)
        summary["out"] = str(out_path)
    return summary
