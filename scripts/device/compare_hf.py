"""Compare posttrain's per-token log-probs with HF transformers on the GPU machine.

Writes tiny random Qwen2 (q/k/v bias, tied) and Qwen3 (q/k norm, untied, bf16) checkpoints with
transformers, runs `posttrain logprobs` on each (CPU and CUDA), and checks the values agree; then
loads a checkpoint written by `posttrain init-base` with transformers and compares again.
Usage: python3 compare_hf.py BUILD_DIR TOKENIZER_DIR OUT_DIR
"""
import json
import shutil
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

build, tokenizer_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
posttrain = f"{build}/bin/posttrain"
ids = [9707, 11, 1879, 0, 576, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13]
results = {}


def hf_logprobs(model_dir, dtype):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [logp[t - 1, ids[t]].item() for t in range(1, len(ids))]


def ours(model_dir, device):
    out_text = subprocess.run([posttrain, "logprobs", "--model", model_dir, "--ids", ",".join(map(str, ids)), "--device", device],
                              check=True, capture_output=True, text=True).stdout
    return json.loads(out_text)["logprobs"]


def compare(name, model_dir, dtype):
    reference = hf_logprobs(model_dir, dtype)
    for device in ["cpu", "cuda"]:
        got = ours(model_dir, device)
        worst = max(abs(a - b) for a, b in zip(got, reference))
        results[f"{name}/{device}"] = worst
        print(f"{name:28s} {device:5s} max |ours - HF| = {worst:.2e}")


common = dict(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6)
torch.manual_seed(0)
for name, config, dtype in [
    ("qwen2-bias-tied-f32", Qwen2Config(tie_word_embeddings=True, **common), torch.float32),
    ("qwen3-qknorm-untied-bf16", Qwen3Config(tie_word_embeddings=False, head_dim=24, **common), torch.bfloat16),
]:
    model = AutoModelForCausalLM.from_config(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # larger than the default init, so log-probs are far from uniform
    path = f"{out}/{name}"
    model.save_pretrained(path, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(f"{tokenizer_dir}/{f}", path)
    compare(name, path, torch.float32)

subprocess.run([posttrain, "init-base", "--preset", "tiny", "--seed", "1", "--out", f"{out}/ours-tiny"], check=True)
compare("posttrain-init-base-tiny", f"{out}/ours-tiny", torch.float32)
json.dump(results, open(f"{out}/compare_hf.json", "w"), indent=2)
bad = {k: v for k, v in results.items() if v > 1e-3}
print("FAIL" if bad else "OK", bad)
sys.exit(1 if bad else 0)
