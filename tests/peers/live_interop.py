#!/usr/bin/env python3
"""Live interop against Hugging Face PEFT (issue #22): random small models and
adapter configs, checked both ways in one PEFT process and one run of the C++
driver (peft_live_driver).

  load  PEFT builds the adapter on a torch model (get_peft_model, random
        values), save_pretrained's it and computes, per adapted module, Y for an
        input X, and for L = sum(G * Y) the input gradient and the gradient of
        every parameter PEFT trains, then the merged weights. We load the
        directory with peft::io::load_peft and must agree on all of it.
  save  Our driver builds random adapters with our API and save_peft's them;
        PeftModel.from_pretrained loads the directory and must compute our Y,
        hold our values and merge to our weights.

Tolerance, per tensor, on max |ours - ref| / max |ref|: 1e-10 in float64; in
float32 1e-5, with ref = PEFT's layer run in float64 on the same values and the
denominator the sum of the magnitudes of the terms (see "references" below);
parameter values must match exactly. C3A: PEFT runs its FFT in float32 whatever
the model's dtype, and its backward's input gradient is not the true one (see
include/peft/adapters/c3a.hpp), so C3A is checked against a dense float64
reference built with PEFT's own circulant (get_circulant_fast), and against
PEFT's own forward and merge at 1e-5.

usage: live_interop.py DRIVER [--seed S|random] [--cases N] [--dtypes F64,F32]
                       [--types LORA,IA3,C3A,LOKR,DORA] [--directions load,save]
                       [--only DIRECTION:TYPE:DTYPE:INDEX] [--keep DIR]
Exit status: 0 when every case agrees, 1 otherwise (each failure names the
case, module and tensor; the case directories are kept for a repro)."""
import argparse
import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from peft import C3AConfig, IA3Config, LoKrConfig, LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.c3a.utils import get_circulant_fast  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

TOL = {"F64": 1e-10, "F32": 1e-5}
TORCH_DTYPE = {"F64": torch.float64, "F32": torch.float32}
PEFT_FP32_TOL = 1e-5  # for what PEFT itself computes in float32 (C3A's FFT path)


# ---- random models -----------------------------------------------------------

def module_names(rng):
    """Dotted Linear names like a transformer's; 'proj' next to 'q_proj' and a
    top-level 'proj' make suffix matching (with and without the dot) matter."""
    names = []
    for i in range(rng.randint(1, 2)):
        for leaf in rng.sample(["q_proj", "k_proj", "v_proj", "o_proj"], rng.randint(1, 3)):
            names.append(f"layers.{i}.self_attn.{leaf}")
        for leaf in rng.sample(["up_proj", "down_proj", "proj", "fc1"], rng.randint(1, 2)):
            names.append(f"layers.{i}.mlp.{leaf}")
    for top in ["head", "proj"]:
        if rng.random() < 0.35:
            names.append(top)
    return names


def build_model(shapes, dtype, seed):
    """A torch module tree holding one nn.Linear per name (no forward: every
    module is run on its own input)."""
    torch.manual_seed(seed)
    root = torch.nn.Module()
    for name, (d_in, d_out, bias) in shapes.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, torch.nn.Linear(d_in, d_out, bias=bias))
    return root.to(TORCH_DTYPE[dtype])


def dim(rng, low=1):
    """A small size >= low, odd more often than not: rectangular layers follow from two draws."""
    d = rng.randint(low, 23)
    return d + 1 if d % 2 == 0 and d < 23 and rng.random() < 0.5 else d


# ---- random configs, per type --------------------------------------------------
# Each type: config(rng, names) -> PEFT config fields (JSON names), and
# shapes(rng, names, fields) -> {name: (d_in, d_out, has_bias)} fitting them.

def random_targets(rng, names):
    """target_modules as a list (leaf names, dotted suffixes, full names) or a
    full-match regex, sometimes with exclude_modules."""
    leaves = sorted({n.split(".")[-1] for n in names})
    fields = {}
    if rng.random() < 0.6:
        keys = rng.sample(leaves, rng.randint(1, len(leaves)))
        if rng.random() < 0.3:
            keys.append(rng.choice(names))  # a full name
        if rng.random() < 0.3:
            keys.append(".".join(rng.choice(names).split(".")[-2:]))  # a dotted suffix
        if rng.random() < 0.15:
            keys.append("gate_proj")  # in no module here, as in configs written for several models
        fields["target_modules"] = keys
    else:
        fields["target_modules"] = rng.choice([
            r".*\.(%s)" % "|".join(rng.sample(leaves, rng.randint(1, len(leaves)))),
            r"layers\.0\..*",
            r".*_proj",
            r"(layers\.\d+\.self_attn\.[qv]_proj|head)",
            r"(.*\.)?(proj|fc1)",
        ])
    if rng.random() < 0.25:
        fields["exclude_modules"] = rng.choice([[rng.choice(names)], [rng.choice(leaves)], r".*\.o_proj", r"layers\.1\..*"])
    return fields


def pattern_keys(rng, names):
    """Keys for rank/alpha patterns; two often match one module, in an order
    that sorting would change (PEFT takes the first in dict order)."""
    leaves = sorted({n.split(".")[-1] for n in names})
    pool = leaves + [rng.choice(names), ".".join(rng.choice(names).split(".")[-2:]),
                     "q_proj|v_proj", r"layers\.1\..*", ".*proj", "self_attn.*"]
    keys = rng.sample(pool, rng.randint(0, 3))
    if rng.random() < 0.4:  # a general key first, then a specific one it shadows
        keys = [".*proj", rng.choice(names)] + [k for k in keys if k not in (".*proj",)]
    return list(dict.fromkeys(keys))


def lora_config(rng, names):
    f = random_targets(rng, names)
    f.update(r=rng.randint(1, 4), lora_alpha=rng.choice([1, 2, 4.5, 8, 16, 0.75]), use_rslora=rng.random() < 0.4,
             lora_dropout=0.0, bias=rng.choice(["none", "all", "lora_only"]), lora_bias=rng.random() < 0.3)
    f["rank_pattern"] = {k: rng.randint(1, 6) for k in pattern_keys(rng, names)}
    f["alpha_pattern"] = {k: rng.choice([1, 3, 8, 0.5]) for k in pattern_keys(rng, names)}
    return f


def dora_config(rng, names):
    """LoRA's fields with use_dora (PEFT refuses lora_bias with DoRA)."""
    f = lora_config(rng, names)
    f.update(use_dora=True, lora_bias=False)
    return f


def ia3_config(rng, names):
    f = random_targets(rng, names)
    leaves = sorted({n.split(".")[-1] for n in names})
    if isinstance(f["target_modules"], list):
        # PEFT requires a subset of the target list; matched with endswith (no dot).
        f["feedforward_modules"] = rng.sample(f["target_modules"], rng.randint(0, len(f["target_modules"])))
    else:
        f["feedforward_modules"] = rng.choice([rng.sample(leaves, rng.randint(0, len(leaves))), r".*mlp\..*", r".*proj"])
    return f


def plain_shapes(rng, names, f):
    return {n: (dim(rng), dim(rng), rng.random() < 0.75) for n in names}


def c3a_block_size(f, name):
    """PEFT's C3A rule (tuners/c3a/model.py): first key with re.match(rf".*\\.{key}$")."""
    keys = list(f.get("block_size_pattern", {}).keys())
    key = next(filter(lambda k: re.match(rf".*\.{k}$", name), keys), name)
    return f.get("block_size_pattern", {}).get(key, f["block_size"])


def c3a_config(rng, names):
    f = random_targets(rng, names)
    leaves = sorted({n.split(".")[-1] for n in names})
    f.update(block_size=rng.choice([1, 2, 3, 4, 6]), bias=rng.choice(["none", "all", "c3a_only"]))
    keys = rng.sample(leaves + [rng.choice(names), "q_proj|v_proj", "self_attn..*", "(up|down)_proj", "head"],
                      rng.randint(0, 2))
    f["block_size_pattern"] = {k: rng.choice([1, 2, 3, 5]) for k in keys}
    return f


def c3a_shapes(rng, names, f):
    shapes = {}
    for n in names:
        b = c3a_block_size(f, n)
        shapes[n] = (b * rng.randint(1, 5), b * rng.randint(1, 5), rng.random() < 0.75)
    return shapes


def lokr_config(rng, names):
    f = random_targets(rng, names)
    f.update(r=rng.randint(1, 8), alpha=rng.choice([1, 2, 4.5, 8, 16]), decompose_both=rng.random() < 0.5,
             decompose_factor=rng.choice([-1, -1, 2, 3, 4]), rank_dropout=0.0, module_dropout=0.0)
    f["rank_pattern"] = {k: rng.randint(1, 8) for k in pattern_keys(rng, names)}
    f["alpha_pattern"] = {k: rng.choice([1, 3, 8, 0.5]) for k in pattern_keys(rng, names)}
    return f


def lokr_shapes(rng, names, f):
    """Primes, squares and products: each of PEFT's factorization paths."""
    pick = lambda: rng.choice([1, 2, 3, 5, 6, 7, 8, 9, 12, 13, 15, 16, 18, 20, 24, 30])  # noqa: E731
    return {n: (pick(), pick(), rng.random() < 0.75) for n in names}


TYPES = {
    "LORA": dict(config=lora_config, shapes=plain_shapes, peft=LoraConfig),  # r > min(d_in, d_out) too
    "IA3": dict(config=ia3_config, shapes=plain_shapes, peft=IA3Config),
    "C3A": dict(config=c3a_config, shapes=c3a_shapes, peft=C3AConfig),
    "LOKR": dict(config=lokr_config, shapes=lokr_shapes, peft=LoKrConfig),
    "DORA": dict(config=dora_config, shapes=plain_shapes, peft=LoraConfig, peft_type="LORA"),  # the file's type
}


def our_name(peft_param_name):
    """PEFT's parameter name inside a tuner layer -> ours: the adapter name goes,
    and LoRA's nn.Linear factors and DoRA's magnitude drop '.weight'
    (lora_A.default.weight -> lora_A)."""
    n = peft_param_name.replace(".default", "")
    if n in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector.weight"):
        n = n[: -len(".weight")]
    return n


def tuner_layers(model):
    """{module name in the user's model: tuner layer}."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            out[name.removeprefix("base_model.model.")] = module
    return out


# ---- one case ------------------------------------------------------------------

class Case:
    def __init__(self, direction, ptype, dtype, index, seed, root):
        self.direction, self.type, self.dtype, self.index = direction, ptype, dtype, index
        self.id = f"{direction}:{ptype}:{dtype}:{index}"
        self.rng = random.Random(f"{seed}/{self.id}")  # every case reproducible alone (--only)
        self.dir = os.path.join(root, self.id.replace(":", "_"))
        self.expected = {}  # module -> {quantity: (reference, tolerance, scale)}
        self.modules = []   # PEFT's adapted modules (load) / module list (save)
        self.fields = None
        self.peft_refuses = None  # why PEFT cannot reload its own directory, if it cannot
        os.makedirs(self.dir)

    def tensors(self):
        return torch.Generator().manual_seed(self.rng.getrandbits(62))


def make_config(case):
    """Random names, config and shapes that PEFT accepts (resampled until it does)."""
    spec = TYPES[case.type]
    for _ in range(50):
        names = module_names(case.rng)
        fields = spec["config"](case.rng, names)
        # Only what this type's config has (C3AConfig has no exclude_modules).
        fields = {k: v for k, v in fields.items() if k in spec["peft"].__dataclass_fields__}
        shapes = spec["shapes"](case.rng, names, fields)
        seed = case.rng.getrandbits(31)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = spec["peft"](**fields)
                model = get_peft_model(build_model(shapes, case.dtype, seed), config)
        except (ValueError, TypeError):  # nothing targeted, a container targeted, a subset rule...
            continue
        return names, fields, shapes, seed, model
    raise RuntimeError(f"{case.id}: no config PEFT accepts in 50 draws")


def prepare_load(case):
    """PEFT side of PEFT -> us: build, randomise, save_pretrained, and compute
    the references on the directory as PEFT reloads it (PeftModel.from_pretrained):
    the files are the interface. (PEFT writes rank/alpha/block_size patterns with
    sorted keys but matched them in insertion order, so its reload can differ
    from the model it saved, or fail; where it fails, we must refuse too.)"""
    names, fields, shapes, seed, model = make_config(case)
    case.fields = fields
    dt = TORCH_DTYPE[case.dtype]
    g = case.tensors()
    with torch.no_grad():  # random values for everything PEFT trains (inits leave ΔW = 0)
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)
    adapter = os.path.join(case.dir, "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. its ZeRO-3 warning about every 1-D lora_B.bias
        model.save_pretrained(adapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = PeftModel.from_pretrained(build_model(shapes, case.dtype, seed), adapter, is_trainable=True)
        except Exception as e:  # a shape mismatch
            case.peft_refuses = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
    for w in caught:  # LoKr: a factor that is full in one reading and split in the other
        if "missing adapter keys" in str(w.message):
            case.peft_refuses = str(w.message)[:300]
    model.eval()
    originals = {n: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                 for n, m in build_model(shapes, case.dtype, seed).named_modules() if isinstance(m, torch.nn.Linear)}
    layers = tuner_layers(model)
    case.modules = sorted(layers)
    inputs = {}
    for name, layer in layers.items():
        W, b = originals[name]
        d_out, d_in = W.shape
        N = case.rng.randint(1, 5)
        X = torch.randn(N, d_in, generator=g, dtype=dt)
        G = torch.randn(N, d_out, generator=g, dtype=dt)
        inputs.update({f"{name}/W": W, f"{name}/X": X, f"{name}/G": G})
        if b is not None:
            inputs[f"{name}/b"] = b
        if not case.peft_refuses:
            case.expected[name] = expect_load(case, layer, X, G)
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(case.dir, "inputs.safetensors"))


# ---- references ------------------------------------------------------------------
# Every expected tensor is (reference, tolerance, scale): the error is measured
# relative to max |scale|. In F64, and for what must match bit for bit, scale is
# the reference itself. In F32 the reference is PEFT's layer run in float64 on
# the same values, and scale is that run on |every value| and |every input|: per
# entry, the sum of the magnitudes of the terms added up (LoRA, IA3, C3A and LoKr are
# multilinear in their values), which float32 rounding is proportional to. The
# plain max |ref| would make a gradient entry that cancels to near zero fail a
# correct float32 result.

def peft_quantities(layer, X, G):
    """Y, dX, every trained parameter's gradient for L = sum(G * Y), and the
    merged W, b of one PEFT tuner layer (which ends up merged)."""
    trained = {n: p for n, p in layer.named_parameters() if p.requires_grad}
    for p in trained.values():
        p.grad = None
    Xg = X.detach().clone().requires_grad_(True)
    Y = layer(Xg)
    (Y * G).sum().backward()
    out = {"Y": Y.detach(), "dX": Xg.grad.detach()}
    out.update({f"grad/{our_name(n)}": p.grad.detach().clone() for n, p in trained.items()})
    merged = peft_merge(layer)
    if merged is not None:
        out["merged_W"] = merged[0]
        if merged[1] is not None:
            out["merged_b"] = merged[1]
    return out


def c3a_quantities(layer, X, G, absolute=False):
    """C3A's exact Y, dX, gradients and merged W, b from the dense W0 + ΔW in
    float64, ΔW = get_circulant_fast(kernel) / d_in (PEFT's own circulant, not its
    float32 cast); `absolute`: the same on |values| and |inputs| (the F32 scale)."""
    f64 = torch.float64
    mag = (lambda t: t.abs()) if absolute else (lambda t: t)
    base = layer.get_base_layer()
    K = mag(layer.c3a_kernel["default"].detach().to(f64)).requires_grad_(True)
    W = mag(base.weight.detach().to(f64))
    b = None if base.bias is None else mag(base.bias.detach().to(f64)).requires_grad_(True)
    Xd = mag(X.detach().to(f64)).requires_grad_(True)
    W_full = W + get_circulant_fast(K) / W.shape[1]
    if absolute:
        W_full = W_full.abs()  # the FFT round trip leaves ~1e-16 noise around zero
    Y = Xd @ W_full.T + (0 if b is None else b)
    (Y * mag(G.to(f64))).sum().backward()
    out = {"Y": Y.detach(), "dX": Xd.grad, "merged_W": W_full.detach()}
    if b is not None:
        out["merged_b"] = b.detach()
    for n, p in layer.named_parameters():
        if p.requires_grad:
            out[f"grad/{our_name(n)}"] = {"c3a_kernel.default": K, "base_layer.bias": b}[n].grad
    return out


def with_scales(case, quantities, scales=None):
    """{key: (ref, tol, scale)}: scale = ref in F64, the |values| run in F32."""
    tol = TOL[case.dtype]
    return {k: (v, tol, v if scales is None else scales[k]) for k, v in quantities.items()}


def absolute_copy(layer, kappa=None):
    """A float64 copy of a tuner layer with |value| for every parameter; for DoRA
    the magnitude is |m|·κ² per row (see dora_norm_condition), so that the
    copy's c = m / ‖|W| + s·|B|·|A|‖ is |c|·κ."""
    c = copy.deepcopy(layer).double()
    with torch.no_grad():
        for p in c.parameters():
            p.abs_()
        if kappa is not None:
            c.lora_magnitude_vector["default"].weight.mul_(kappa * kappa)
    return c


def reference(case, layer, X, G):
    """The references for one PEFT layer (left unchanged); C3A from its dense form."""
    if case.type == "C3A":
        ref = c3a_quantities(layer, X, G)
        scales = c3a_quantities(layer, X, G, absolute=True) if case.dtype == "F32" else None
        return with_scales(case, ref, scales)
    if case.dtype == "F64":
        return with_scales(case, peft_quantities(copy.deepcopy(layer), X, G))
    f64 = torch.float64
    ref = peft_quantities(copy.deepcopy(layer).double(), X.to(f64), G.to(f64))
    kappa = dora_norm_condition(layer) if case.type == "DORA" else None
    scales = peft_quantities(absolute_copy(layer, kappa), X.to(f64).abs(), G.to(f64).abs())
    if kappa is not None and "grad/lora_magnitude_vector" in scales:
        scales["grad/lora_magnitude_vector"] = scales["grad/lora_magnitude_vector"] * kappa * kappa
    return with_scales(case, ref, scales)


def dora_norm_condition(layer):
    """κ_i = ‖|W_i| + s·|B_i|·|A|‖ / ‖W_i + s·B_i·A‖ per row (>= 1). DoRA is not
    multilinear: every result goes through c = m / ‖W + s·B·A‖, whose float32
    norm carries a relative error up to eps·κ_i (large where the sum cancels,
    e.g. d_in = 1). The absolute copy's c_i = |m_i|·κ_i² / (κ_i·‖·‖_i) = |c_i|·κ_i
    scales each row's Y, dX, A/B gradient and merged-W terms by its own κ_i,
    and the magnitude's gradient (c's 1/‖·‖ enters it twice over) by κ_i², so
    that one ill-conditioned row widens no other row's tolerance."""
    f64 = torch.float64
    W = layer.get_base_layer().weight.detach().to(f64)
    A = layer.lora_A["default"].weight.detach().to(f64)
    B = layer.lora_B["default"].weight.detach().to(f64)
    s = layer.scaling["default"]
    terms = (W.abs() + s * B.abs() @ A.abs()).norm(dim=1)
    norm = (W + s * B @ A).norm(dim=1)
    return (terms / norm.clamp_min(1e-300)).clamp_min(1.0)


def peft_own_c3a(layer, X, G):
    """PEFT's own C3A forward and merge (float32 inside, whatever the dtype),
    measured against the magnitudes of the terms as F32 results are."""
    scales = c3a_quantities(layer, X, G, absolute=True)
    with torch.no_grad():
        out = {"Y~peft": (layer(X), PEFT_FP32_TOL, scales["Y"])}
    merged = peft_merge(copy.deepcopy(layer))
    if merged is not None:
        out["merged_W~peft"] = (merged[0], PEFT_FP32_TOL, scales["merged_W"])
    return out


def values(layer, include):
    """PEFT's parameter values, which ours must hold bit for bit."""
    return {f"value/{our_name(n)}": (p.detach().clone(), 0.0, None)
            for n, p in layer.named_parameters() if include(n, p)}


def expect_load(case, layer, X, G):
    exp = values(layer, lambda n, p: p.requires_grad)
    exp.update(reference(case, layer, X, G))
    if case.type == "C3A":
        exp.update(peft_own_c3a(layer, X, G))
    return exp


def peft_merge(layer):
    """PEFT's merged (W, b) of one tuner layer, or None where PEFT cannot merge
    (lora_bias on a layer without bias)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer.merge()
    except (RuntimeError, ValueError, TypeError, AttributeError):
        return None
    base = layer.get_base_layer()  # the layer is not used again: no unmerge
    return base.weight.detach().clone(), None if base.bias is None else base.bias.detach().clone()


def prepare_save(case):
    """PEFT side of us -> PEFT, before the driver: a model, a config, inputs."""
    names, fields, shapes, seed, _ = make_config(case)  # a config PEFT accepts
    case.fields = fields
    case.seed, case.shapes = seed, shapes
    model = build_model(shapes, case.dtype, seed)
    g = case.tensors()
    inputs = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            inputs[f"{name}/W"] = m.weight.detach()
            if m.bias is not None:
                inputs[f"{name}/b"] = m.bias.detach()
            inputs[f"{name}/X"] = torch.randn(case.rng.randint(1, 5), m.in_features, generator=g, dtype=m.weight.dtype)
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(case.dir, "inputs.safetensors"))
    with open(os.path.join(case.dir, "spec.json"), "w") as out:
        peft_type = TYPES[case.type].get("peft_type", case.type)
        json.dump({"config": dict(fields, peft_type=peft_type), "modules": names, "seed": seed}, out)
    case.inputs = inputs


def check_save(case, ours, meta, report):
    """After the driver: PEFT loads our directory and must compute our Y, hold
    our values (the base bias too when bias != "none") and merge to our W, b."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(build_model(case.shapes, case.dtype, case.seed),
                                          os.path.join(case.dir, "adapter"))
    for w in caught:
        if "missing adapter keys" in str(w.message) or "unexpected" in str(w.message).lower():
            report.fail(case, "-", "load", f"PeftModel.from_pretrained warned: {w.message}")
    model.eval()
    layers = tuner_layers(model)
    check_modules(case, sorted(layers), meta, report)
    biased = case.fields.get("bias", "none") != "none"
    for name, layer in layers.items():
        X = case.inputs[f"{name}/X"]
        G = torch.zeros(X.shape[0], layer.get_base_layer().out_features, dtype=X.dtype)  # no gradients here
        exp = values(layer, lambda n, p: not n.startswith("base_layer.") or (n == "base_layer.bias" and biased))
        exp.update({k: v for k, v in reference(case, layer, X, G).items() if k in ("Y", "merged_W", "merged_b")})
        if case.type == "C3A":
            exp.update(peft_own_c3a(layer, X, G))
        compare(case, name, exp, ours, report, require_all_values=False)


# ---- comparison ----------------------------------------------------------------

class Report:
    def __init__(self):
        self.failures = []
        self.worst = {}   # (direction, type, dtype) -> {quantity: (rel, tol, where)}
        self.counts = {}  # (direction, type, dtype) -> cases
        self.peft_refuses = 0  # PEFT directories PEFT itself cannot reload (we must refuse them too)

    def fail(self, case, module, tensor, message):
        message = " | ".join(line.strip() for line in message.strip().splitlines()[:3])
        self.failures.append(f"FAIL {case.id} module {module} tensor {tensor}: {message}\n"
                             f"     config {json.dumps(case.fields)}\n     files {case.dir}")

    def record(self, case, key, rel, tol, where):
        """Worst error per quantity class: Y, dX, grad (every parameter), merged
        (W and b), value (loaded/saved parameters); '~peft' against PEFT's own
        float32 C3A path."""
        quantity = key.split("/")[0].replace("_W", "").replace("_b", "")
        slot = (case.direction, case.type, case.dtype)
        row = self.worst.setdefault(slot, {})
        if quantity not in row or rel > row[quantity][0]:
            row[quantity] = (rel, tol, where)


def rel_error(ours, ref, scale, elementwise=False):
    """max |ours - ref| / max |scale| (0 when both are empty or zero); with
    `elementwise`, max over entries of |ours - ref| / |scale| (DoRA in float32,
    whose scale differs row by row: see dora_norm_condition)."""
    if ref.numel() == 0:
        return 0.0
    diff = (ours.to(torch.float64) - ref.to(torch.float64)).abs()
    if elementwise:
        return (diff / scale.to(torch.float64).abs().clamp_min(1e-300)).max().item() if diff.max().item() else 0.0
    err = diff.max().item()
    return err / max(scale.abs().max().item(), 1e-300) if err else 0.0


def compare(case, module, expected, ours, report, require_all_values=True):
    prefix = f"{module}/"
    got = {k[len(prefix):]: v for k, v in ours.items() if k.startswith(prefix)}
    for key, (ref, tol, scale) in expected.items():
        ours_key = key.split("~")[0]  # "Y~peft": our Y against PEFT's own forward
        if ours_key not in got:
            what = "a parameter PEFT trains" if key.startswith(("grad/", "value/")) else "a result"
            report.fail(case, module, ours_key, f"missing on our side ({what}; we have {sorted(got)})")
            continue
        mine = got[ours_key]
        if tuple(mine.shape) != tuple(ref.shape):
            report.fail(case, module, ours_key, f"shape {tuple(mine.shape)}, PEFT's is {tuple(ref.shape)}")
            continue
        per_entry = case.type == "DORA" and case.dtype == "F32" and scale is not None and scale is not ref
        rel = rel_error(mine, ref, ref if scale is None else scale, elementwise=per_entry)
        report.record(case, key, rel, tol, f"{case.id} {module} {key}")
        if not rel <= tol:
            diff = (mine.to(torch.float64) - ref.to(torch.float64)).abs()
            at = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
            report.fail(case, module, key, f"rel err {rel:.3g} > {tol:g}; at {at} ours {mine[at].item():.17g}, "
                                           f"PEFT/reference {ref[at].item():.17g}")
    # Everything we train must be something PEFT trains too.
    for k in got:
        if k.startswith("grad/") and k not in expected and require_all_values:
            report.fail(case, module, k, "we report a trainable parameter PEFT does not train")
        if k.startswith("value/") and k not in expected:
            report.fail(case, module, k, "we hold a parameter PEFT's layer does not have")


def check_modules(case, peft_modules, ours_meta, report):
    ours_modules = json.loads(ours_meta.get("modules", "[]"))
    if sorted(ours_modules) != sorted(peft_modules):
        report.fail(case, "-", "modules", f"PEFT adapts {sorted(peft_modules)}, we adapt {sorted(ours_modules)}")


def read_ours(case):
    path = os.path.join(case.dir, "ours.safetensors")
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


# ---- main ----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("driver")
    ap.add_argument("--seed", default="1", help="an integer, or 'random' (printed, to rerun)")
    ap.add_argument("--cases", type=int, default=30, help="cases per direction, type and dtype")
    ap.add_argument("--dtypes", default="F64,F32")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--directions", default="load,save")
    ap.add_argument("--only", help="one case, DIRECTION:TYPE:DTYPE:INDEX as a failure names it")
    ap.add_argument("--keep", help="write the cases here and keep them")
    args = ap.parse_args()
    seed = random.SystemRandom().randrange(1 << 31) if args.seed == "random" else int(args.seed)
    torch.set_num_threads(1)  # tiny tensors: threads only add noise
    start = time.time()

    root = args.keep or tempfile.mkdtemp(prefix="peft_live_")
    os.makedirs(root, exist_ok=True)
    if args.only:
        d, t, dt, i = args.only.split(":")
        plan = [(d, t, dt, int(i))]
    else:
        plan = [(d, t, dt, i) for d in args.directions.split(",") for t in args.types.split(",")
                for dt in args.dtypes.split(",") for i in range(args.cases)]
    report = Report()
    cases = []
    for d, t, dt, i in plan:
        case = Case(d, t, dt, i, seed, root)
        try:
            (prepare_load if d == "load" else prepare_save)(case)
        except Exception as e:  # a harness problem: say so, do not hide it
            report.fail(case, "-", "-", f"preparing the case raised {type(e).__name__}: {e}")
            continue
        cases.append(case)
        report.counts[(d, t, dt)] = report.counts.get((d, t, dt), 0) + 1
    prepared = time.time()

    manifest = os.path.join(root, "manifest.json")
    with open(manifest, "w") as out:
        json.dump({"cases": [{"dir": c.dir, "direction": c.direction, "dtype": c.dtype} for c in cases]}, out)
    run = subprocess.run([args.driver, manifest], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"live_interop: the driver failed (exit {run.returncode}):\n{run.stdout}{run.stderr}", file=sys.stderr)
        return 1
    driven = time.time()

    for case in cases:
        error = os.path.join(case.dir, "error.txt")
        threw = open(error).read().strip() if os.path.exists(error) else None
        if case.peft_refuses:
            report.peft_refuses += 1
            if not threw:
                report.fail(case, "-", "-", f"PEFT cannot reload this directory ({case.peft_refuses}); we load it")
            continue
        if threw:
            report.fail(case, "-", "-", "our side threw: " + threw)
            continue
        ours, meta = read_ours(case)
        if case.direction == "load":
            check_modules(case, case.modules, meta, report)
            for module, exp in case.expected.items():
                compare(case, module, exp, ours, report)
        else:
            try:
                check_save(case, ours, meta, report)
            except Exception as e:
                report.fail(case, "-", "load", f"PEFT could not load our directory: {type(e).__name__}: {e}")
    done = time.time()

    print(f"live_interop: seed {seed}, peft {__import__('peft').__version__}, torch {torch.__version__}")
    print(f"cases (direction type dtype: count): " + ", ".join(f"{d} {t} {dt}: {n}" for (d, t, dt), n in sorted(report.counts.items())))
    if report.peft_refuses:
        print(f"{report.peft_refuses} PEFT-written directories PEFT itself cannot reload (pattern keys saved sorted); "
              "we refuse them too")
    print("worst relative error per quantity (tolerance: F64 1e-10, F32 1e-5, ~peft 1e-5, value exact):")
    for (d, t, dt), row in sorted(report.worst.items()):
        cells = "  ".join(f"{q} {row[q][0]:.1e}" for q in sorted(row))
        print(f"  {d:4} {t:4} {dt}: {cells}")
    print(f"time: prepare {prepared - start:.1f} s, driver {driven - prepared:.1f} s, check {done - driven:.1f} s")
    if report.failures:
        print(f"\n{len(report.failures)} FAILURES (rerun one with --only ID --seed {seed}):", file=sys.stderr)
        for i, f in enumerate(report.failures):  # in full for the first ones, then their first line
            print(f if i < 20 else f.splitlines()[0], file=sys.stderr)
        print(f"case directories kept in {root}", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(root)
    print(f"live_interop: all {len(cases)} cases agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
