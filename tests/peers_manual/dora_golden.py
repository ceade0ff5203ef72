#!/usr/bin/env python3
"""DoRA goldens from Hugging Face PEFT 0.21.2 (LoraConfig(use_dora=True)), run
by hand in the peer environment (scripts/peers.sh), never by ctest:

  HF_HUB_OFFLINE=1 build/peers/bin/python tests/peers_manual/dora_golden.py tests/golden/peft

Each case is a directory in the layout of tests/golden/README.md: PEFT's own
save_pretrained output (adapter_config.json, adapter_model.safetensors) and
io.safetensors with the float64 oracle of the model y = fc2(fc1(x)):
  base.<m>.weight|bias    the frozen weights before PEFT touched them
  init.<m>.lora_A|lora_B|lora_magnitude_vector
                          the adapter right after get_peft_model (PEFT's init
                          of the magnitude, ||W + s*B*A|| row-wise)
  param.<name>, grad.<name>
                          every trainable tensor (randomised: A, B ~ N(0, 0.2^2),
                          m scaled by 1 + N(0, 0.2^2), trained biases N(0, 0.2^2))
                          and its gradient for L = sum(y * dy)
  x, y, dy, dx            input, output, upstream gradient, input gradient
  merged.<m>.weight|bias, y_merged
                          after model.merge_adapter(), and the merged output
  unmerged.<m>.weight     after model.unmerge_adapter() (W / c - s*B*A, PEFT's)
  mask.<m>                dropout cases: the mask applied to the adapter input

Dropout: PEFT draws torch masks; for a reproducible oracle each lora_dropout
module is replaced by a module multiplying by a fixed mask, the one peft-cpp's
DoRA draws (peft::Dropout: xoshiro256** seeded by splitmix64 with the DoRA's
seed + 1, keep iff uniform() >= p, kept entries scaled by 1/(1 - p)); PEFT
still takes its dropout branch (the module is not nn.Identity, training mode).
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import peft  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_default_dtype(torch.float64)
MASK64 = (1 << 64) - 1


class Rng:
    """peft::Rng (include/peft/core/random.hpp): xoshiro256** seeded by splitmix64."""

    def __init__(self, seed):
        self.s = []
        x = seed
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


def ours_dropout_mask(p, seed, rows, cols):
    """The mask peft::Dropout<double>(p, seed) draws first for a rows x cols input."""
    rng = Rng(seed)
    keep = 1.0 / (1.0 - p)
    values = [keep if rng.uniform() >= p else 0.0 for _ in range(rows * cols)]
    return torch.tensor(values, dtype=torch.float64).reshape(rows, cols)


class FixedMask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


class Net(nn.Module):
    def __init__(self, d_in=48, d_h=64, d_out=40, bias1=True, bias2=True):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_h, bias=bias1)
        self.fc2 = nn.Linear(d_h, d_out, bias=bias2)

    def forward(self, x):  # no nonlinearity: the oracle is about the adapters alone
        return self.fc2(self.fc1(x))


def run_case(out, name, config, bias2=True, batch=5, seed=1, dropout_seed=None):
    torch.manual_seed(seed)
    base = Net(bias2=bias2)
    base_sd = {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}
    model = peft.get_peft_model(base, config)
    io = {}
    for m in ("fc1", "fc2"):
        layer = getattr(model.base_model.model, m)
        if not hasattr(layer, "lora_A"):
            continue
        io[f"init.{m}.lora_A"] = layer.lora_A["default"].weight.detach().clone()
        io[f"init.{m}.lora_B"] = layer.lora_B["default"].weight.detach().clone()
        io[f"init.{m}.lora_magnitude_vector"] = layer.lora_magnitude_vector["default"].weight.detach().clone()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.2
            p.copy_(p * (1 + noise) if "lora_magnitude_vector" in n else noise)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    x = torch.randn(batch, 48, generator=g, dtype=torch.float64)
    model.train()
    if dropout_seed is not None:
        h_in = {"fc1": 48, "fc2": 64}
        for m in ("fc1", "fc2"):
            layer = getattr(model.base_model.model, m)
            if hasattr(layer, "lora_dropout"):
                mask = ours_dropout_mask(config.lora_dropout, dropout_seed, batch, h_in[m])
                layer.lora_dropout["default"] = FixedMask(mask)
                io[f"mask.{m}"] = mask
    x = x.requires_grad_(True)
    y = model(x)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (y * dy).sum().backward()
    io.update({"x": x.detach(), "y": y.detach(), "dy": dy, "dx": x.grad.detach()})
    for k, v in base_sd.items():
        io["base." + k] = v
    for n, p in model.named_parameters():
        if p.requires_grad:
            io["grad." + n] = p.grad.detach().clone()
            io["param." + n] = p.detach().clone()
    model.eval()
    model.merge_adapter()
    for m in ("fc1", "fc2"):
        layer = getattr(model.base_model.model, m)
        base_layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        io[f"merged.{m}.weight"] = base_layer.weight.detach().clone()
        if base_layer.bias is not None:
            io[f"merged.{m}.bias"] = base_layer.bias.detach().clone()
    with torch.no_grad():
        io["y_merged"] = model(x.detach())
    model.unmerge_adapter()
    for m in ("fc1", "fc2"):
        layer = getattr(model.base_model.model, m)
        base_layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        io[f"unmerged.{m}.weight"] = base_layer.weight.detach().clone()
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    with safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
        saved = {k: (tuple(f.get_tensor(k).shape), str(f.get_tensor(k).dtype)) for k in f.keys()}
    print("ok", name, "saved:", saved)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/peft"
    run_case(out, "dora_f64",
             peft.LoraConfig(r=8, lora_alpha=16, use_dora=True, target_modules=["fc1", "fc2"],
                             init_lora_weights=False),
             bias2=False)
    run_case(out, "dora_rslora_bias_f64",
             peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True, use_dora=True, bias="lora_only",
                             target_modules=["fc1"], init_lora_weights=False))
    # peft-cpp's load_peft builds DoRA with seed 0: its Dropout is seeded with 1.
    run_case(out, "dora_dropout_f64",
             peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.25, use_dora=True, target_modules=["fc1", "fc2"],
                             init_lora_weights=False),
             dropout_seed=1)
    print("peft", peft.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
