#!/usr/bin/env python3
"""peft-cpp vs PyTorch on the CPU, in one run, at the same shapes and threads.

Times forward+backward (input gradient, and parameter gradients of the
trainable parts) of one d x d layer for N rows in PyTorch: the frozen base,
LoRA r=8, a circulant adapter through torch.fft, RED, and, when the `peft`
package imports, Hugging Face PEFT's own LoRA, DoRA, IA3, C3A and LoKr. Then
runs `peft-bench --json` with the same d, N and thread counts and prints
peft-cpp / PyTorch time ratios (< 1: peft-cpp is faster) and each side's
adapter overhead over its own frozen base, measured in the same run.
Run it in the peer environment (bash scripts/peers.sh):

    build/peers/bin/python bench/compare_torch.py [--peft-bench build/bench/bench/peft-bench]
                                   [--d 768,4096] [--N 256] [--threads 1,2] [--rounds 15]

Without PyTorch it prints why and exits 0: the comparison is optional.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

# Debian's OpenBLAS reads these at load time; they are tuned for other CPUs
# on some machines and slow its GEMM down, so unset them before torch loads.
for variable in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(variable, None)
# BLAS libraries size their thread pools when they load, outside
# torch.set_num_threads: with one --threads value, pin them to it first.
_threads = argparse.ArgumentParser(add_help=False)
_threads.add_argument("--threads", default="1,2")
if "," not in _threads.parse_known_args()[0].threads:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = _threads.parse_known_args()[0].threads

try:
    import torch
except ImportError:
    print("compare_torch: PyTorch is not importable here; comparison skipped "
          "(Debian: apt-get install python3-torch; or PyTorch 2.x from pip)")
    sys.exit(0)

try:
    import peft as hf_peft
except ImportError:
    hf_peft = None


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--peft-bench", default=os.path.join(here, "..", "build", "bench", "bench", "peft-bench"))
    parser.add_argument("--d", default="768,4096")
    parser.add_argument("--N", type=int, default=256)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=15)
    return parser.parse_args()


def blas_of_torch():
    """Which BLAS torch's GEMMs run on: MKL, or for a "generic" build (Debian's)
    the library the system's libblas.so.3 resolves to (netlib's reference
    BLAS is slow; OpenBLAS is what a fair Debian peer uses)."""
    match = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    info = match.group(1) if match else "unknown"
    if info == "generic":
        for candidate in ("/usr/lib/x86_64-linux-gnu/libblas.so.3", "/usr/lib/aarch64-linux-gnu/libblas.so.3"):
            if os.path.exists(candidate):
                return f"BLAS_INFO=generic -> {os.path.realpath(candidate)}"
    return f"BLAS_INFO={info}"


class Circulant(torch.nn.Module):
    """y = base(x) + circ(g) x, the product computed with real FFTs."""

    def __init__(self, base, d):
        super().__init__()
        self.base, self.d = base, d
        self.g = torch.nn.Parameter(torch.randn(d) / d)

    def forward(self, x):
        spectrum = torch.fft.rfft(x, dim=-1) * torch.fft.rfft(self.g)
        return self.base(x) + torch.fft.irfft(spectrum, n=self.d, dim=-1)


class LoRA(torch.nn.Module):
    """y = base(x) + (alpha / r) B A x, written directly (no PEFT)."""

    def __init__(self, base, d, r=8):
        super().__init__()
        self.base, self.scale = base, 2.0
        self.A = torch.nn.Parameter(torch.randn(r, d) / d ** 0.5)
        self.B = torch.nn.Parameter(torch.randn(d, r) / r ** 0.5)

    def forward(self, x):
        return self.base(x) + (x @ self.A.t()) @ self.B.t() * self.scale


class RED(torch.nn.Module):
    """y = base(x) * scale + bias."""

    def __init__(self, base, d):
        super().__init__()
        self.base = base
        self.scale = torch.nn.Parameter(torch.ones(d))
        self.bias = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return self.base(x) * self.scale + self.bias


class Wrapper(torch.nn.Module):
    """A one-layer model whose Linear is named `fc`, for PEFT to target."""

    def __init__(self, base):
        super().__init__()
        self.fc = base

    def forward(self, x):
        return self.fc(x)


def frozen_linear(d):
    base = torch.nn.Linear(d, d)
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def hf_peft_layers(d):
    """Hugging Face PEFT's LoRA r=8, DoRA r=8, IA3, C3A b=64 and LoKr r=8 around a fresh frozen layer."""
    if hf_peft is None:
        return {}
    configs = {
        "PEFT LoRA r=8": hf_peft.LoraConfig(r=8, lora_alpha=16, target_modules=["fc"], init_lora_weights=False),
        "PEFT DoRA r=8": hf_peft.LoraConfig(r=8, lora_alpha=16, target_modules=["fc"], init_lora_weights=False,
                                            use_dora=True),
        "PEFT IA3": hf_peft.IA3Config(target_modules=["fc"], feedforward_modules=[]),
        "PEFT LoKr r=8": hf_peft.LoKrConfig(r=8, alpha=8, target_modules=["fc"]),
    }
    if hasattr(hf_peft, "C3AConfig"):
        configs["PEFT C3A b=64"] = hf_peft.C3AConfig(block_size=64, target_modules=["fc"])
    return {name: hf_peft.get_peft_model(Wrapper(frozen_linear(d)), config) for name, config in configs.items()}


def torch_layers(d):
    """PyTorch layer name -> (module, name of the matching peft-bench row)."""
    layers = {
        "frozen base": (frozen_linear(d), "frozen base"),
        "LoRA r=8": (LoRA(frozen_linear(d), d), "LoRA r=8"),
        "circulant (torch.fft)": (Circulant(frozen_linear(d), d), "SURM circulant"),
        "RED": (RED(frozen_linear(d), d), "RED"),
    }
    ours = {"PEFT LoRA r=8": "LoRA r=8", "PEFT DoRA r=8": "DoRA r=8", "PEFT IA3": "IA3", "PEFT C3A b=64": "C3A b=64",
            "PEFT LoKr r=8": "LoKr r=8"}
    for name, module in hf_peft_layers(d).items():
        layers[name] = (module, ours[name])
    return layers


def time_layers(layers, d, rows, rounds):
    """Median forward+backward seconds per layer, timed interleaved round-robin."""
    x0, dy = torch.randn(rows, d), torch.randn(rows, d)
    samples = {name: [] for name in layers}
    for round_index in range(rounds + 1):  # round 0 warms up
        for name, (module, _) in layers.items():
            x = x0.clone().requires_grad_(True)
            start = time.perf_counter()
            module(x).backward(dy)
            elapsed = time.perf_counter() - start
            module.zero_grad(set_to_none=True)
            if round_index:
                samples[name].append(elapsed)
    return {name: statistics.median(times) for name, times in samples.items()}


def run_peft_bench(args):
    command = [args.peft_bench, "--json", "--d", args.d, "--N", str(args.N), "--threads", args.threads,
               "--rounds", str(args.rounds)]
    result = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout)


def main():
    args = parse_args()
    if not os.path.exists(args.peft_bench):
        sys.exit(f"compare_torch: {args.peft_bench} not found; build it first: bash scripts/bench.sh --d 768")
    dims = [int(d) for d in args.d.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    torch.manual_seed(0)

    print(f"peer: PyTorch {torch.__version__} ({blas_of_torch()})"
          + (f", Hugging Face PEFT {hf_peft.__version__}" if hf_peft else ", Hugging Face PEFT not importable"))
    ours = run_peft_bench(args)
    print(f"ours: peft-bench ({ours['machine']})")
    ours_rows = {(r["adapter"], r["d"], r["threads"]): r for r in ours["results"]}

    print(f"\nforward+backward of one d x d layer, N = {args.N}, float32, median of {args.rounds} rounds; "
          "overhead: over the same side's frozen base\n")
    print("| layer | d | threads | PyTorch ms | peft-cpp row | peft-cpp ms | peft-cpp / PyTorch "
          "| PyTorch overhead | peft-cpp overhead |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for d in dims:
            layers = torch_layers(d)
            medians = time_layers(layers, d, args.N, args.rounds)
            for name, (_, our_name) in layers.items():
                mine = ours_rows.get((our_name, d, threads))
                theirs_overhead = medians[name] / medians["frozen base"] - 1
                cells = ["-", "-", "-"]
                if mine:
                    cells = [f"{mine['seconds'] * 1e3:.3f}", f"{mine['seconds'] / medians[name]:.2f}",
                             f"{mine['overhead'] * 100:+.1f}%"]
                overhead = f"{theirs_overhead * 100:+.1f}%" if name != "frozen base" else "-"
                if name == "frozen base":
                    cells[2] = "-"
                print(f"| {name} | {d} | {threads} | {medians[name] * 1e3:.3f} | {our_name} | {cells[0]} | {cells[1]} "
                      f"| {overhead} | {cells[2]} |")


if __name__ == "__main__":
    main()
