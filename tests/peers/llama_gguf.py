#!/usr/bin/env python3
"""llama.cpp applies our GGUF LoRA adapters as we merge them.

For each seed: a tiny random LLaMA model (Hugging Face layout, float32) is
converted to GGUF as llama.cpp's converter does (q/k rows permuted for
rotary embeddings); gguf_lora_driver puts LoRA layers of mixed rank, alpha
and rsLoRA on some of its projections, writes them with save_gguf_lora and
merges them into the weights. llama-cpp-python then runs the base model with
the adapter and the merged model: their logits must agree, and differ from
the base model's (so the check can fail).

usage: llama_gguf.py DRIVER [--seeds N]
Exit status 77 (skipped) when llama_cpp is not installed (scripts/peers.sh --llama)."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import llama_cpp
except ImportError:
    print("SKIPPED: llama_cpp is not installed; run bash scripts/peers.sh --llama", flush=True)
    sys.exit(77)
import gguf
from safetensors.numpy import load_file, save_file

VOCAB, EMBD, LAYERS, HEADS, KV_HEADS, FF, CTX = 48, 64, 2, 4, 2, 96, 32


def hf_model(rng):
    head_dim = EMBD // HEADS
    w = {"model.embed_tokens.weight": rng.normal(0, 1, (VOCAB, EMBD)),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=EMBD),
         "lm_head.weight": rng.normal(0, EMBD ** -0.5, (VOCAB, EMBD))}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=EMBD)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=EMBD)
        for name, shape in [("self_attn.q_proj", (EMBD, EMBD)), ("self_attn.k_proj", (KV_HEADS * head_dim, EMBD)),
                            ("self_attn.v_proj", (KV_HEADS * head_dim, EMBD)), ("self_attn.o_proj", (EMBD, EMBD)),
                            ("mlp.gate_proj", (FF, EMBD)), ("mlp.up_proj", (FF, EMBD)), ("mlp.down_proj", (EMBD, FF))]:
            w[p + name + ".weight"] = rng.normal(0, shape[1] ** -0.5, shape)
    return {k: v.astype(np.float32) for k, v in w.items()}


def rotary_permute(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute: the two rotary halves of each head interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(weights, path):
    out = gguf.GGUFWriter(path, "llama")
    out.add_context_length(CTX)
    out.add_embedding_length(EMBD)
    out.add_block_count(LAYERS)
    out.add_feed_forward_length(FF)
    out.add_head_count(HEADS)
    out.add_head_count_kv(KV_HEADS)
    out.add_rope_dimension_count(EMBD // HEADS)
    out.add_layer_norm_rms_eps(1e-5)
    out.add_file_type(gguf.LlamaFileType.ALL_F32)
    out.add_tokenizer_model("none")
    out.add_vocab_size(VOCAB)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for key, value in weights.items():
        if key in names:
            out.add_tensor(names[key], value)
            continue
        layer, part = key[len("model.layers."):].split(".", 1)
        part = part[: -len(".weight")]
        if part == "self_attn.q_proj":
            value = rotary_permute(value, HEADS)
        elif part == "self_attn.k_proj":
            value = rotary_permute(value, KV_HEADS)
        out.add_tensor(f"blk.{layer}.{parts[part]}.weight", np.ascontiguousarray(value))
    out.write_header_to_file()
    out.write_kv_data_to_file()
    out.write_tensors_to_file()
    out.close()


def logits(model, tokens, lora=None):
    llm = llama_cpp.Llama(model_path=model, lora_path=lora, n_ctx=CTX, n_threads=1, logits_all=True,
                          verbose=False, seed=0)
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    llm.close()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("driver")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    failures = 0
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="peft_llama_gguf_") as tmp:
        for seed in range(1, args.seeds + 1):
            rng = np.random.default_rng(seed)
            work = os.path.join(tmp, str(seed))
            os.makedirs(work)
            weights = hf_model(rng)
            save_file(weights, os.path.join(work, "base_hf.safetensors"))
            write_gguf(weights, os.path.join(work, "base.gguf"))
            run = subprocess.run([args.driver, work, str(seed), str(HEADS), str(KV_HEADS)], capture_output=True,
                                 text=True)
            if run.returncode != 0:
                print(f"seed {seed}: driver failed:\n{run.stdout}{run.stderr}")
                failures += 1
                continue
            write_gguf(load_file(os.path.join(work, "merged_hf.safetensors")), os.path.join(work, "merged.gguf"))
            tokens = [int(t) for t in rng.integers(0, VOCAB, 12)]
            adapted = logits(os.path.join(work, "base.gguf"), tokens, os.path.join(work, "adapter.gguf"))
            merged = logits(os.path.join(work, "merged.gguf"), tokens)
            base = logits(os.path.join(work, "base.gguf"), tokens)
            error = np.abs(adapted - merged).max() / np.abs(merged).max()
            effect = np.abs(base - merged).max() / np.abs(merged).max()
            worst = max(worst, error)
            modules = run.stdout.strip().splitlines()
            ok = error <= 1e-4 and effect >= 1e-2
            names = ", ".join(m.replace("model.layers.", "").replace("self_attn.", "").replace("mlp.", "")
                              for m in modules)
            print(f"seed {seed}: {len(modules)} adapted modules ({names}), "
                  f"|llama.cpp(base + adapter) - llama.cpp(merged by us)| / |logits| = {error:.2e}, "
                  f"adapter effect {effect:.2e} {'ok' if ok else 'FAILED'}", flush=True)
            failures += not ok
    print(f"llama_gguf: {args.seeds - failures}/{args.seeds} seeds agree, worst relative error {worst:.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
