"""Fast-path choices by measurement: timing sides, the decision rule, the cache, bf16's quality
check and the fp32 attention kept in CPU bf16 training."""

from __future__ import annotations

import json
import time

import pytest
import torch

from finetune import calibration
from finetune.calibration import Choice, Side, cached, decide


def sleeper(seconds: float):
    return lambda batch: time.sleep(seconds)


BATCHES = [{"input_ids": torch.ones(1, 100)}] * 3  # 300 real tokens


def tiny_bert(seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    return BertForSequenceClassification(config).train()


def batch(rows: int = 8, length: int = 24, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, 500, (rows, length), generator=generator),
            "attention_mask": torch.ones(rows, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (rows,), generator=generator)}


def test_the_faster_side_wins_only_beyond_the_noise():
    faster = decide([Side("fp32", sleeper(0.012)), Side("bf16", sleeper(0.004))], BATCHES, "bf16")
    assert faster.use and faster.rates["bf16"] > 2 * faster.rates["fp32"]
    assert faster.rates["fp32"] == pytest.approx(300 / (3 * 0.012), rel=0.3)
    same = decide([Side("fp32", sleeper(0.03)), Side("bf16", sleeper(0.03))], BATCHES, "bf16")  # long: under load
    assert not same.use and "not faster beyond the noise" in same.reason
    slower = decide([Side("fp32", sleeper(0.004)), Side("bf16", sleeper(0.012))], BATCHES, "bf16")
    assert not slower.use


def test_one_round_each_settles_a_clear_difference():
    clear = [Side("fp32", sleeper(0.012)), Side("bf16", sleeper(0.004))]
    close = [Side("fp32", sleeper(0.03)), Side("bf16", sleeper(0.025))]  # long enough for a loaded machine
    calibration.time_sides(clear, BATCHES)
    calibration.time_sides(close, BATCHES)
    assert [len(side.rounds_s) for side in clear] == [1, 1]
    assert [len(side.rounds_s) for side in close] == [calibration.ROUNDS] * 2


def test_rewarm_times_each_side_in_its_steady_state():
    """A side slow on its first batch after another particular side ran (ONNX Runtime's threads
    spin on after a run) is timed at its own pace when each of its rounds starts untimed."""
    last = [None]

    def side(name, seconds, after_onnx=None):
        def step(_batch):
            time.sleep(after_onnx if after_onnx and last[0] == "onnx" else seconds)
            last[0] = name
        return Side(name, step)

    one_batch = BATCHES[:1]
    plain = [side("fp32", 0.01), side("bf16", 0.004, after_onnx=0.03), side("onnx", 0.008)]
    calibration.time_sides(plain, one_batch, decisive=None)
    assert plain[1].round_s > plain[0].round_s, "the premise: one batch a round times bf16 just after onnx"
    rewarmed = [side("fp32", 0.01), side("bf16", 0.004, after_onnx=0.03), side("onnx", 0.008)]
    calibration.time_sides(rewarmed, one_batch, decisive=None, rewarm=True)
    assert rewarmed[1].round_s < rewarmed[0].round_s / 1.5


def test_a_hopeless_side_is_not_timed_further(monkeypatch):
    monkeypatch.setattr(calibration, "SLACK_S", 0.0)
    calls = []
    calibration.time_sides([Side("fp32", sleeper(0.002)),
                            Side("bf16", lambda b: (calls.append(1), time.sleep(0.02)))], BATCHES)
    assert len(calls) == 1, "its warm-up stopped after the batch that passed the limit, and no round ran"
    choice = decide([Side("fp32", sleeper(0.002)), Side("bf16", sleeper(0.02))], BATCHES, "bf16")
    assert not choice.use and "first round took" in choice.reason and "bf16" not in choice.rates
    monkeypatch.setattr(calibration, "SLACK_S", 1.0)
    short = decide([Side("fp32", sleeper(0.002)), Side("bf16", sleeper(0.02))], BATCHES, "bf16")
    assert "bf16" in short.rates, "a warm-up of milliseconds is not counted out by its set-up"


def test_a_faster_side_outside_the_quality_tolerance_is_refused():
    choice = decide([Side("fp32", sleeper(0.012)), Side("bf16", sleeper(0.004))], BATCHES, "bf16",
                    quality=0.2, tolerance=0.05)
    assert not choice.use and "exceeds the family's 0.05" in choice.reason


def test_choices_are_cached_per_key_and_a_damaged_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    measured = []

    def measure():
        measured.append(1)
        return Choice(True, "bf16 1.5x fp32", {"fp32": 100.0, "bf16": 150.0})

    first, again = cached("k", measure), cached("k", measure)
    assert len(measured) == 1 and again.use and again.rates == first.rates and again.reason.endswith("(cached)")
    cached("other", measure)
    assert len(measured) == 2
    calibration.cache_path().write_text("{not json")
    assert cached("k", measure).use and len(measured) == 3
    stored = json.loads(calibration.cache_path().read_text())
    stored["k"]["version"] = calibration.VERSION - 1
    calibration.cache_path().write_text(json.dumps(stored))
    cached("k", measure)
    assert len(measured) == 4, "a decision measured by an older calibration is measured again"


def test_keys_name_the_machine_the_model_and_the_shape():
    key = calibration._key("train-bf16", tiny_bert(), [batch(8, 24)], 0.05)
    assert calibration.machine_key() in key and "BertForSequenceClassification" in key and "8x32" in key
    assert calibration._key("train-bf16", tiny_bert(1), [batch(8, 20)], 0.05) == key, "weights and length bucket"
    assert calibration._key("train-bf16", tiny_bert(), [batch(7, 24)], 0.05) == key, "rows bucket"
    assert calibration._key("train-bf16", tiny_bert(), [batch(16, 24)], 0.05) != key


def test_training_bf16_measures_copies_and_leaves_the_model_and_the_rng_alone(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    choice = calibration.training_bf16(model, [batch(seed=s) for s in range(3)], tolerance=0.05)
    assert torch.equal(torch.rand(3), expected), "the measurement drew from a saved-and-restored RNG"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert "fp32" in choice.rates and ("bf16" in choice.rates or "first round took" in choice.reason)
    assert "distance to fp32" in choice.reason or "first round took" in choice.reason
    assert calibration.training_bf16(model, [batch(seed=s) for s in range(3)], 0.05).reason.endswith("(cached)")


def test_bf16_gradients_and_outputs_are_close_to_fp32_on_a_small_bert():
    model = tiny_bert()
    gradients = calibration.gradient_distance(model, batch())
    outputs = calibration.output_distance(model.eval(), batch())
    assert 0 < gradients < 0.05 and 0 < outputs < 0.05


def test_cpu_bf16_training_runs_attention_in_fp32_and_inference_keeps_bf16(monkeypatch):
    import torch

    from finetune.precision import keep_cpu_attention_fp32

    keep_cpu_attention_fp32()
    keep_cpu_attention_fp32()  # once per process, however often it is asked
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(query, *args, **kwargs):
        seen.append(query.dtype)
        return original(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    model, inputs = tiny_bert(), batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**inputs).loss
    loss.backward()
    assert seen == [torch.float32] * 2 and model.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    seen.clear()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**inputs)
    assert seen == [torch.bfloat16] * 2
    seen.clear()
    model(**inputs)
    assert seen == [torch.float32] * 2


def test_compile_is_not_priced_for_a_run_shorter_than_pricing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    started = time.perf_counter()
    choice = calibration.training_compile(tiny_bert(), [batch(seed=s) for s in range(2)], 20, bf16=False)
    assert not choice.use and "not priced" in choice.reason and "20 steps" in choice.reason
    assert time.perf_counter() - started < calibration.COMPILE_PRICE_GUESS_S / 4, "nothing was compiled"
    [key] = json.loads((tmp_path / "calibration.json").read_text())
    assert "|train-eager-fp32|" in key
    monkeypatch.setattr(calibration, "time_sides", lambda *_, **__: pytest.fail("timed again"))
    again = calibration.training_compile(tiny_bert(), [batch(seed=s) for s in range(2)], 20, bf16=False)
    assert again.reason == choice.reason, "the eager rate is read from the cache: no step is timed twice"


def test_a_long_run_prices_compile_once_and_short_runs_then_use_the_price(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    model, batches = tiny_bert(), [batch(seed=s) for s in range(2)]
    long = calibration.training_compile(model, batches, 10**7, bf16=False, eager_rate=1000.0)
    if "failed" in long.reason:
        pytest.skip(f"no torch.compile here: {long.reason}")
    assert long.cost_s > 0 and set(long.rates) == {"eager", "compiled"} and "(cached)" not in long.reason
    assert 0 < calibration.pricing_s() != calibration.COMPILE_PRICE_GUESS_S, "this machine's own pricing time"
    short = calibration.training_compile(model, batches, 2, bf16=False, eager_rate=1000.0)
    assert not short.use and short.reason.endswith("(cached)") and short.rates == long.rates
    assert short.reason.startswith("2 steps: eager ~0 s"), "the run's own steps, priced with the stored profile"


def test_the_torch_backend_decides_auto_on_its_first_batch(tmp_path, monkeypatch):
    import numpy as np

    from finetune.inference import TorchBackend

    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    inputs = {k: v.numpy() for k, v in batch().items() if k != "labels"} | {"token_type_ids": np.zeros((8, 24), int)}
    auto = TorchBackend(tiny_bert(), ("logits",), precision="auto")
    [logits] = auto(inputs)
    assert auto.choice is not None and auto.bf16 == auto.choice.use and logits.shape == (8, 2)
    assert "fp32" in auto.choice.rates or "no bf16 units" in auto.choice.reason
    auto(inputs)
    assert auto.choice.measured_s > 0, "decided once, on the first batch"
    forced = TorchBackend(tiny_bert(), ("logits",), precision="fp32")
    forced(inputs)
    assert forced.choice is None and not forced.bf16
