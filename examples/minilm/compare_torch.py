"""One training step of MiniLM-L6 with an adapter: ours (finetune_minilm --bench)
against PyTorch + Hugging Face PEFT on the same CPU, same batch and sequence
length, in one run.

Both sides: all-MiniLM-L6-v2 frozen, the adapter on query and value of every
layer, mean pooling, a 4-class linear head, mean cross-entropy, backward,
gradient clipping per group and an AdamW step; no dropout (PyTorch's model in
eval mode, which still trains); a fixed batch of random token ids without
padding. Each side's median over --steps steps after 2 warm-up steps, at each
thread count. PyTorch runs transformers' default attention (SDPA).

    build/peers/bin/python examples/minilm/compare_torch.py TRAINER MODEL_DIR [--threads 1,2]
"""
import argparse
import statistics
import subprocess
import time

import torch
from peft import C3AConfig, IA3Config, LoKrConfig, LoraConfig, get_peft_model
from transformers import BertModel
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

QV = ["query", "value"]
# Our method name (finetune_minilm --list) -> PEFT's config.
ADAPTERS = {
    "LoRA r=8": lambda: LoraConfig(r=8, lora_alpha=16, target_modules=QV),
    "DoRA r=8": lambda: LoraConfig(r=8, lora_alpha=16, use_dora=True, target_modules=QV),
    "IA3": lambda: IA3Config(target_modules=QV, feedforward_modules=[]),
    "C3A b=64": lambda: C3AConfig(block_size=64, target_modules=QV),
    "LoKr r=8": lambda: LoKrConfig(r=8, alpha=8, target_modules=QV),
}


def torch_step_ms(model_dir, config, batch, length, steps):
    base = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
    model = get_peft_model(base, config)
    model.eval()  # no dropout; autograd still runs
    head = torch.nn.Linear(base.config.hidden_size, 4)
    adapters = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(adapters, lr=1e-3, weight_decay=0.0)
    head_opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    labels = torch.arange(batch) % 4
    times = []
    for s in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad()
        head_opt.zero_grad()
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapters, 1.0)
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        head_opt.step()
        if s >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def ours_step_ms(trainer, model_dir, method, batch, length, steps, threads):
    out = subprocess.run([trainer, "--model", model_dir, "--bench", str(steps), "--bench-length", str(length),
                          "--batch", str(batch), "--threads", str(threads), "--methods", method],
                         check=True, capture_output=True, text=True).stdout
    row = [line for line in out.splitlines() if line.startswith(f"| {method} |")][0]
    return float(row.split("|")[2])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trainer")
    parser.add_argument("model_dir")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--adapters", default=",".join(ADAPTERS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}; batch {args.batch} x {args.length} tokens; median of {args.steps} steps\n")
    print("| adapter (q, v) | threads | PyTorch + PEFT ms | ours ms | ours / theirs |")
    print("|---|---:|---:|---:|---:|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name in args.adapters.split(","):
            theirs = torch_step_ms(args.model_dir, ADAPTERS[name](), args.batch, args.length, args.steps)
            ours = ours_step_ms(args.trainer, args.model_dir, name, args.batch, args.length, args.steps, threads)
            print(f"| {name} | {threads} | {theirs:.1f} | {ours:.1f} | {ours / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
