#!/usr/bin/env python3
"""MultiAdapted against PEFT's multi-adapter model, live.

PEFT puts three LoRA adapters ("default" r=3, "second" r=2, "third" r=3, random
non-zero weights, float64) on a two-layer torch model, saves them with
save_pretrained (default at the root, the others in subfolders) and adds
weighted combinations with add_weighted_adapter: cat, linear, svd (rank 2,
three sources) and a single source. (Not svd_clamp: it clamps at a quantile
of the signed factor entries, and the SVD's sign per singular pair is
LAPACK's choice, so PEFT's own result depends on the LAPACK build;
test_multi_adapted checks ours against its definition.) multi_adapter_driver
loads the saved tree with io::load_peft_tree, adds the same combinations with
MultiAdapted::add_weighted_adapter and writes every ΔW. They must agree with
PEFT's get_delta_weight (1e-10 relative). The driver also saves the tree it
loaded with io::save_peft_tree; PEFT loads that tree back (from_pretrained for
the root, load_adapter per subfolder) and must find the same ΔW.

usage: peft_multi_adapter.py DRIVER"""
import os
import subprocess
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

D_IN, D_OUT = 12, 10
COMBINATIONS = [  # (name, sources, weights, combination_type, svd options) as the driver adds them
    ("cat", ["default", "second"], [0.7, -1.3], "cat", {}),
    ("linear", ["default", "third"], [0.5, -2.0], "linear", {}),
    ("svd", ["default", "second", "third"], [1.0, 0.5, -0.75], "svd", {"svd_rank": 2}),
    ("single", ["second"], [-0.4], "cat", {}),
]


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(D_IN, D_OUT)
        self.v = torch.nn.Linear(D_IN, D_OUT)

    def forward(self, x):
        return self.q(x) + self.v(x)


def deltas(peft_model, names):
    """ΔW (d_out x d_in) per adapter and module, as PEFT computes it."""
    return {f"{n}/{m}": getattr(peft_model.base_model.model, m).get_delta_weight(n) for n in names for m in ("q", "v")}


def relative(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def main():
    driver = sys.argv[1]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    base = Model()
    with tempfile.TemporaryDirectory() as work:
        save_file({k: v.contiguous() for k, v in base.state_dict().items()}, os.path.join(work, "base.safetensors"))
        model = get_peft_model(base, LoraConfig(r=3, lora_alpha=6, target_modules=["q", "v"]))
        model.add_adapter("second", LoraConfig(r=2, lora_alpha=3, target_modules=["q", "v"]))
        model.add_adapter("third", LoraConfig(r=3, lora_alpha=12, target_modules=["q", "v"]))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn_like(p) * 0.5)
        model.save_pretrained(os.path.join(work, "peft_tree"))
        for name, sources, weights, how, options in COMBINATIONS:
            model.add_weighted_adapter(sources, weights, name, combination_type=how, **options)
        theirs = deltas(model, ["default", "second", "third"] + [c[0] for c in COMBINATIONS])

        run = subprocess.run([driver, work], capture_output=True, text=True)
        print(run.stdout, end="")
        if run.returncode != 0:
            print(run.stderr, end="")
            return 1
        ours = load_file(os.path.join(work, "ours.safetensors"))
        failures = 0
        for key, want in sorted(theirs.items()):
            if key not in ours:
                print(f"FAIL {key}: missing from the driver's output")
                failures += 1
                continue
            error = relative(ours[key], want)
            ok = error <= 1e-10
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {key:18s} relative error {error:.2e}")

        # PEFT reads the tree we saved: the root as default, subfolders by name.
        tree = os.path.join(work, "our_tree")
        reloaded = PeftModel.from_pretrained(Model(), tree)
        for name in ("second", "third"):
            reloaded.load_adapter(os.path.join(tree, name), adapter_name=name)
        for key, want in sorted(deltas(reloaded, ["default", "second", "third"]).items()):
            error = relative(want, theirs[key])
            ok = error <= 1e-12
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} our tree: {key:10s} relative error {error:.2e}")
        print("FAILED" if failures else "all agree")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
