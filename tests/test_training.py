"""conchshell.training: the history, progress, NaN, schedule and early-stopping pieces."""

from __future__ import annotations

import io
import logging
import math
import re
import time

import numpy as np
import pytest
import torch
from torch import nn

from conchshell.training import (
    FILE_REFRESH_SECONDS,
    EarlyStopping,
    TrainingLog,
    budget_cosine_schedule,
    constant_schedule,
    cosine_schedule,
    finite_everywhere,
    grads_finite,
    guarded_step,
    load_history,
    progress,
    save_history,
)


def _model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- NaN policy
def test_guarded_step_steps_when_everything_is_finite():
    model, reference = _model(), _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    before = _weights(model)
    record = {"step": 1}
    loss = model(torch.ones(4, 3)).pow(2).mean()
    assert guarded_step(loss, model, optimizer, record) is True
    assert record == {"step": 1}
    reference(torch.ones(4, 3)).pow(2).mean().backward()
    plain.step()
    # exactly the unguarded backward and step
    assert not _same(_weights(model), before)
    assert _same(_weights(model), _weights(reference))


def test_guarded_step_clips_the_gradient_norm():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    loss = 1000 * model(torch.ones(4, 3)).sum()
    assert guarded_step(loss, model, optimizer, {}, clip=0.5) is True
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # Plain SGD at rate 1 moves the weights by the (clipped) gradient: norm 0.5, not 1000s.
    torch.testing.assert_close((after - before).norm(), torch.tensor(0.5))


def test_guarded_step_skips_a_non_finite_loss(caplog):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _weights(model)
    record = {"step": 7, "loss": math.nan}
    loss = model(torch.ones(4, 3)).sum() * math.nan
    with caplog.at_level(logging.WARNING, logger="conchshell"):
        assert guarded_step(loss, model, optimizer, record, desc="toy") is False
    assert record == {"step": 7, "loss": record["loss"], "skipped": "non-finite loss"}
    assert _same(_weights(model), before)
    assert all(p.grad is None for p in model.parameters())  # no backward either
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("conchshell", "WARNING", "toy: update skipped at step 7: non-finite loss")
    ]


def test_guarded_step_skips_a_non_finite_gradient(caplog):
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    before = _weights(model)
    model.bias.register_hook(lambda grad: torch.full_like(grad, math.inf))
    record = {"epoch": 2}
    loss = model(torch.ones(4, 3)).pow(2).mean()  # finite
    with caplog.at_level(logging.WARNING, logger="conchshell"):
        took = guarded_step(loss, model, optimizer, record, key="skipped_g")
    assert took is False
    assert record == {"epoch": 2, "skipped_g": "non-finite gradient"}
    assert _same(_weights(model), before)
    assert not optimizer.state  # Adam never stepped
    assert [r.getMessage() for r in caplog.records] == [
        "training: update skipped at epoch 2: non-finite gradient"
    ]


def test_guarded_step_refuses_bad_arguments():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.ones(1, 3)).sum()
    with pytest.raises(ValueError, match="'nan'"):
        guarded_step(loss, model, optimizer, {}, key="nan")
    with pytest.raises(TypeError, match="float"):
        guarded_step(1.0, model, optimizer, {})
    with pytest.raises(TypeError, match="list"):
        guarded_step(loss, model, optimizer, [])


def test_finiteness_checks():
    assert finite_everywhere(torch.tensor([1.0, 2.0]))
    assert not finite_everywhere(torch.tensor([1.0, math.inf]))
    assert not finite_everywhere(torch.tensor(math.nan))
    with pytest.raises(TypeError, match="float"):
        finite_everywhere(1.0)
    model = _model()
    assert grads_finite(model)  # no gradients yet
    model(torch.ones(2, 3)).sum().backward()
    assert grads_finite(model)
    model.weight.grad[0, 0] = math.nan
    assert not grads_finite(model)
    with pytest.raises(TypeError, match="Tensor"):
        grads_finite(torch.ones(2))


# ---------------------------------------------------------------- early stopping
def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model = _model()
    stopper = EarlyStopping(patience=2)
    values = [3.0, 2.0, 2.5, math.nan, 1.0]
    stops = []
    kept = None
    for epoch, value in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # the weights differ every epoch
        if epoch == 2:
            kept = _weights(model)
        stops.append(stopper.update(value, model, epoch))
        if stops[-1]:
            break
    # 2.5 and NaN are the two updates without improvement: stop at the second.
    assert stops == [False, False, False, True]
    assert (stopper.best_epoch, stopper.best_value, stopper.waited) == (2, 2.0, 2)
    assert not _same(_weights(model), kept)
    assert stopper.restore(model) is True
    assert _same(_weights(model), kept)


def test_early_stopping_without_patience_and_without_improvement():
    model = _model()
    never = EarlyStopping(patience=None)
    assert not any(never.update(1.0, model, epoch) for epoch in range(1, 50))
    assert never.best_epoch == 1
    none_kept = EarlyStopping(patience=1)
    before = _weights(model)
    assert none_kept.update(math.nan, model, 1) is True
    assert none_kept.best_epoch is None and none_kept.best_value == math.inf
    assert none_kept.restore(model) is False
    assert _same(_weights(model), before)


@pytest.mark.parametrize(
    ("patience", "error"), [(0, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_early_stopping_refuses_a_bad_patience(patience, error):
    with pytest.raises(error, match=re.escape(str(patience))):
        EarlyStopping(patience)


# ---------------------------------------------------------------- schedules
def _rates(optimizer: torch.optim.Optimizer, schedule, n: int) -> list[list[float]]:
    rates = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(n - 1):
        optimizer.step()
        schedule.step()
        rates.append([group["lr"] for group in optimizer.param_groups])
    return rates


def test_cosine_schedule_gives_the_closed_form_at_every_step():
    model = _model()
    optimizer = torch.optim.AdamW(
        [{"params": [model.weight], "lr": 1e-3}, {"params": [model.bias], "lr": 3e-4}]
    )
    schedule = cosine_schedule(optimizer, total_steps=60)
    assert isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR)
    expected = [
        [0.5 * lr * (1.0 + math.cos(math.pi * (t / 60))) for lr in (1e-3, 3e-4)] for t in range(60)
    ]
    assert _rates(optimizer, schedule, 60) == expected  # exactly, not approximately


def test_budget_cosine_and_constant_schedules():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    spent = iter([0.0, 0.25, 0.5, 1.0, 3.0])
    schedule = budget_cosine_schedule(optimizer, lambda: next(spent))
    expected = [0.2 * (0.5 * (1.0 + math.cos(math.pi * d))) for d in (0.0, 0.25, 0.5, 1.0, 1.0)]
    assert [r[0] for r in _rates(optimizer, schedule, 5)] == expected
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    assert [r[0] for r in _rates(optimizer, constant_schedule(optimizer), 4)] == [0.2] * 4


def test_schedules_refuse_bad_arguments():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    with pytest.raises(ValueError, match="0"):
        cosine_schedule(optimizer, 0)
    with pytest.raises(TypeError, match=r"2\.5"):
        cosine_schedule(optimizer, 2.5)
    with pytest.raises(TypeError, match="Parameter"):
        constant_schedule(nn.Parameter(torch.zeros(1)))
    with pytest.raises(TypeError, match="float"):
        budget_cosine_schedule(optimizer, 0.5)
    with pytest.raises(ValueError, match=r"-1\.0"):
        budget_cosine_schedule(optimizer, lambda: -1.0)


# ---------------------------------------------------------------- history
def test_training_log_completes_records_and_counts_skips():
    with TrainingLog(desc="toy", total=5, verbose=0) as log:
        records = [
            log.log({"step": 1, "loss": 1.0}),
            log.log({"step": 2, "loss": math.nan, "skipped": "non-finite loss"}),
            log.log({"step": 3, "skipped_g": "non-finite gradient"}, g="step"),
        ]
        log.count_skipped(3)
        records.append(log.log({"step": 4}))
    assert log.history == records
    assert [r["n_skipped"] for r in log.history] == [0, 1, 2, 5]
    assert log.n_skipped == 5
    seconds = [r["seconds"] for r in log.history]
    assert all(isinstance(s, float) and s == round(s, 3) for s in seconds)
    assert seconds == sorted(seconds)
    assert list(log.history[0]) == ["step", "loss", "seconds", "n_skipped"]


def test_training_log_continues_a_history():
    history = [{"step": 1, "n_skipped": 4, "seconds": 9.0}]
    log = TrainingLog(desc="toy", total=None, verbose=0, history=history)
    log.log({"step": 2, "skipped": "non-finite loss"})
    log.close()
    assert log.history is history
    assert [r["n_skipped"] for r in history] == [4, 5]


def test_training_log_out_of_time():
    assert not TrainingLog(desc="toy", total=1, verbose=0).out_of_time()
    assert not TrainingLog(desc="toy", total=1, verbose=0, max_time=3600).out_of_time()
    log = TrainingLog(desc="toy", total=1, verbose=0, max_time=0.01)
    time.sleep(0.02)
    assert log.elapsed > 0.01 and log.out_of_time()


def test_training_log_refuses_bad_arguments():
    with pytest.raises(ValueError, match="0"):
        TrainingLog(desc="toy", total=1, verbose=0, max_time=0)
    with pytest.raises(TypeError, match="tuple"):
        TrainingLog(desc="toy", total=1, verbose=0, history=())
    log = TrainingLog(desc="toy", total=1, verbose=1)
    log.bar.fp = io.StringIO()  # keep the test output clean
    with pytest.raises(TypeError, match="list"):
        log.log([1.0])
    with pytest.raises(ValueError, match="'accuracy'"):
        log.log({"loss": 1.0}, acc="accuracy")
    with pytest.raises(ValueError, match="-1"):
        log.count_skipped(-1)
    log.close()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_without_verbose_and_calm_in_a_file():
    quiet = progress(10, desc="toy", verbose=0, file=io.StringIO())
    assert quiet.disable
    quiet.close()

    in_terminal = progress(10, desc="toy", verbose=1, file=_Terminal())
    assert in_terminal.mininterval < 1  # redrawn in place, smoothly
    in_terminal.close()

    log_file = io.StringIO()
    bar = progress(5000, desc="toy", verbose=1, unit="step", file=log_file)
    assert bar.mininterval == FILE_REFRESH_SECONDS and bar.ascii
    for _ in range(5000):
        bar.update(1)
    bar.close()
    text = log_file.getvalue()
    # Plain lines, a handful rather than one redraw per update.
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "5000/5000" in lines[-1]


# ---------------------------------------------------------------- saving
def test_save_history_round_trips(tmp_path):
    history = [
        {"step": 1, "lr": 1e-3, "loss": 0.5, "valid_loss": math.nan, "skipped": "x"},
        {"step": 2, "lr": np.float64(5e-4), "loss": np.float32(0.25), "n": np.int64(3)},
    ]
    path = save_history(history, tmp_path / "history.json")
    assert path == tmp_path / "history.json"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # no temporary left
    loaded = load_history(path)
    assert math.isnan(loaded[0].pop("valid_loss"))
    assert loaded == [
        {"step": 1, "lr": 1e-3, "loss": 0.5, "skipped": "x"},
        {"step": 2, "lr": 5e-4, "loss": 0.25, "n": 3},
    ]


def test_save_history_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_history([{"step": object()}], tmp_path / "h.json")
    with pytest.raises(TypeError, match="dict"):
        save_history({"step": 1}, tmp_path / "h.json")
    with pytest.raises(TypeError, match=r"history\[1\]"):
        save_history([{}, 3], tmp_path / "h.json")
    assert not list(tmp_path.iterdir())
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_history(tmp_path / "bad.json")


def test_training_log_written_to_a_file_prints_a_line_every_ten_seconds(capsys, monkeypatch):
    """``make demo > log 2>&1``: 3000 steps over 300 s, 31 lines (start, one per 10 s, end)."""
    import tqdm.std

    from conchshell.training import tqdm as training_tqdm

    now = [0.0]  # tqdm's clock: each step takes 0.1 s
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    # No monitor thread on the real clock: one left running by an earlier test's
    # bars finds this bar "late" every 10 real seconds and forces an extra line.
    for cls in {tqdm.std.tqdm, training_tqdm}:
        monkeypatch.setattr(cls, "monitor_interval", 0)
        if cls.monitor is not None:
            cls.monitor.exit()
            monkeypatch.setattr(cls, "monitor", None)
    with TrainingLog(desc="GAN", total=3000, verbose=1) as log:
        for step in range(1, 3001):
            now[0] += 0.1
            log.log({"step": step, "loss": 1.0 / step})
    err = capsys.readouterr().err
    assert "\r" not in err  # plain lines: no carriage-return redraws
    lines = err.splitlines()
    assert lines[0].startswith("GAN:   0%|") and "3000/3000" in lines[-1]
    assert len(lines) == 31
    assert all(line.startswith("GAN: ") for line in lines)
