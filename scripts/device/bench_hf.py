"""HF transformers on the same shape and work as build/bin/bench_model, for docs/performance.md.

Builds the model from the config.json that `posttrain init-base` writes for the preset (so both run
the identical architecture), random weights in float32 on CUDA, and times under bf16 autocast:
forward + per-token log-probs, forward + backward of their sum, and greedy generation with the KV
cache (prompt 64, fixed number of new tokens). Prints one JSON line like bench_model's.
Usage: python3 bench_hf.py BUILD_DIR [--preset qwen2.5-0.5b] [--batch 8] [--seq 1024] [--new-tokens 64]
"""
import argparse
import json
import subprocess
import tempfile
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("build")
parser.add_argument("--preset", default="qwen2.5-0.5b")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--seq", type=int, default=1024)
parser.add_argument("--new-tokens", type=int, default=64)
args = parser.parse_args()

folder = tempfile.mkdtemp() + "/base"
subprocess.run([f"{args.build}/bin/posttrain", "init-base", "--preset", args.preset, "--seed", "0", "--out", folder,
                "--dtype", "bfloat16"], check=True, capture_output=True)
config = AutoConfig.from_pretrained(folder)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).cuda()
ids = torch.randint(0, 150000, (args.batch, args.seq), device="cuda")
tokens = args.batch * args.seq


def score():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids).logits[:, :-1]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def timed(fn):
    fn()  # warm up
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


with torch.no_grad():
    forward_s = timed(score)


def train():
    model.zero_grad(set_to_none=True)
    score().sum().backward()


train_s = timed(train)
model.zero_grad(set_to_none=True)
prompts = torch.full((args.batch, 64), 9707, device="cuda")


def gen():
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=args.new_tokens,
                       min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)


generate_s = timed(gen)
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
matmul_s = min(timed(lambda: a @ a) for _ in range(3))
result = {"bench": "hf_transformers", "preset": args.preset, "batch": args.batch, "seq": args.seq,
          "attn_implementation": getattr(config, "_attn_implementation", None),
          "matmul_bf16_tflops": 2 * n**3 / matmul_s / 1e12,
          "forward_tokens_per_s": tokens / forward_s, "train_tokens_per_s": tokens / train_s,
          "generate_tokens_per_s": args.batch * args.new_tokens / generate_s,
          "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}
print(json.dumps(result))
