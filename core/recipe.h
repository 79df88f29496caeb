// A recipe: what to train (method, base, data), how (train, checkpoint), typed and validated
// before any work starts. Method-specific options stay as a YAML section the trainer validates.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/lora_spec.h"

namespace posttrain {

struct BaseSpec {
  std::string path;  // a HF model folder, or empty when `preset` is set
  std::string preset;  // build {preset, seed} deterministically on first use, then cache it
  uint64_t seed = 0;
  // A tokenizer folder for the preset ("" = the full Qwen3 tokenizer): the vocabulary is sized to it
  // (rounded up to a multiple of 64), e.g. a trimmed testbed tokenizer for fast CPU training.
  std::string tokenizer;
};

struct DataSpec {
  std::string train;  // JSONL file (TRL conventions)
  std::string format = "auto";  // auto | messages | prompt_completion | text
  int64_t max_length = 512;  // longer examples are truncated (and counted)
  bool skip_bad_records = false;
  bool pack = false;  // SFT: pack each micro-batch's examples into rows of max_length (no cross-attention)
  // Extra variables for the tokenizer's chat template, as a JSON object (TRL's chat_template_kwargs,
  // e.g. {"enable_thinking": false} for Qwen3's non-thinking prompts).
  std::string chat_template_kwargs = "{}";
};

struct TrainSpec {
  int64_t steps = 100;  // optimizer steps
  int64_t batch_size = 8;  // sequences per optimizer step, all ranks together
  int64_t micro_batch_size = 4;  // sequences per forward/backward on one rank
  double lr = 1e-4;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  int64_t warmup_steps = 0;
  std::string schedule = "cosine";  // cosine | linear | constant (after warmup)
  double min_lr_ratio = 0.1;  // floor of cosine/linear decay, as a fraction of lr
  double grad_clip = 1.0;  // global L2 norm; 0 disables
  std::string on_nonfinite = "stop";  // stop | skip: a NaN/Inf loss or gradient
  std::string device = "cpu";
  // fp32 | bf16: bf16 runs forwards under CUDA autocast to bfloat16 while weights, gradients and
  // AdamW moments stay float32 (master weights); CPU training is always float32.
  std::string precision = "fp32";
  bool activation_checkpointing = false;  // recompute each layer in backward: less memory, ~1/3 more compute
  // ZeRO stage: 0 = every rank keeps all of AdamW's state; 1 = each rank keeps and updates 1/N of it
  // and the updated parameters are all-gathered (trainers/optim.h).
  int64_t zero = 0;
  int64_t log_every = 1;
};

struct CheckpointSpec {
  int64_t every = 0;  // steps between checkpoints; 0 = only at the end
  int64_t keep_last = 2;  // older complete checkpoints are deleted
  std::string resume = "auto";  // auto (newest complete checkpoint in the run dir) | none
};

// One `evals:` entry: a suite (a registered name or a YAML task file) and when it runs. The suite's
// own options stay as YAML; the suite validates them (eval_hooks/) before any training starts.
struct EvalSpec {
  std::string suite;  // registered name, or an absolute path to a YAML task file
  bool after_run = true;  // on the final policy
  int64_t every_n_steps = 0;  // also after every K optimizer steps (0 = never)
  bool on_checkpoint = false;  // also whenever a checkpoint is saved
  YAML::Node options;  // every other key of the entry; `data`, `reference`, `reward_model` made absolute
  std::string file;  // the recipe file (for messages)
  std::string path;  // "evals[i]", for messages
};

struct Recipe {
  std::string file;  // the recipe as given
  std::string method;
  uint64_t seed = 0;
  BaseSpec base;
  DataSpec data;
  TrainSpec train;
  LoraSpec lora;
  CheckpointSpec checkpoint;
  std::string output_dir;  // run directory
  std::vector<std::string> plugins;  // shared libraries loaded before `method` is looked up
  std::vector<EvalSpec> evals;  // eval hooks
  YAML::Node method_options;  // the section named after the method (e.g. `sft:`), may be null
  std::vector<std::string> overrides;  // dotted keys set on the command line (for error messages)
};

// Validates the tree into a Recipe: unknown keys, wrong types and impossible values (negative lr,
// batch_size not divisible by world_size x micro_batch_size, ...) are UserErrors naming file,
// line and key. Relative paths are resolved against the recipe's folder.
Recipe parse_recipe(const std::string& path, const std::vector<std::string>& overrides, int world_size);

// `path` made absolute against the folder of `file` (a recipe or matrix); absolute or empty paths as is.
std::string resolve_recipe_path(const std::string& file, const std::string& path);

// A path-valued setting made absolute: relative to the working directory when it was set on the
// command line (key=value, like any command-line path), else relative to the folder of `file`.
std::string resolve_setting_path(const std::string& file, const std::string& value, bool set_on_command_line);

// A method section with the values of file-naming keys (constitution, judge, model, at any depth,
// e.g. ppo.rewards[i].model) resolved against the folder of `file`, so a recipe's paths are
// relative to the recipe wherever they sit. A "${output_dir}" in them is first replaced by
// `output_dir` (a matrix's, so a variant can name another variant's output). In place (the nodes
// keep their lines for messages); returns the section.
YAML::Node resolve_method_paths(const YAML::Node& section, const std::string& file, const std::string& output_dir = "");

// The fully resolved recipe (every default written out, absolute paths) as YAML: itself a valid
// recipe that reproduces the run.
std::string resolved_recipe_yaml(const Recipe& recipe);

}  // namespace posttrain
