import pytest
import torch

from genchain.errors import ConfigError
from genchain.models.registry import create_model
from genchain.runtime import cpu_has_native_bf16, select_device, select_precision
from genchain.train.precision import Precision


def test_auto_device_on_this_machine_and_unknown_names():
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            select_device("cuda")


def test_precision_choice():
    cpu = torch.device("cpu")
    assert select_precision(cpu, "auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert select_precision(cpu, "fp32") == "fp32"
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        select_precision(cpu, "fp16-mixed")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        select_precision(cpu, "int8")


def test_master_weights_keep_fp32_updates_that_bf16_would_lose():
    torch.manual_seed(0)
    model = create_model("gpt-tiny", vocab_size=7)
    precision = Precision("bf16", torch.device("cpu"))
    params = precision.prepare(model)
    assert model.lm_head.weight.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in params)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1e-6)  # updates far below bf16's resolution near 0.02
    for _ in range(3):
        idx = torch.randint(0, 7, (2, 8))
        precision.backward(model(idx, idx).loss)
        precision.unscale_and_clip(optimizer, params, 1.0)
        precision.step(optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))  # masters moved
    for master, live in zip(params, model.parameters(), strict=True):
        torch.testing.assert_close(live, master.to(torch.bfloat16))
