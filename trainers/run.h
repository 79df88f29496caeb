// Running a recipe: resolve the base and data, lay out the run directory (resolved recipe, manifest,
// metrics), dispatch to the trainer registered for `method`, and mark the run completed or failed.
#pragma once

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/recipe.h"
#include "launch/distributed.h"

namespace posttrain {

class QwenForCausalLMImpl;
struct RunContext;

// When a policy hook is called: after an optimizer step (kStep, every step), after a checkpoint
// was saved (kCheckpoint), and once on the final policy (kAfterRun). Every rank calls it.
enum class HookPoint { kStep, kCheckpoint, kAfterRun };
// A callback on the policy in memory (the eval hooks of a recipe's `evals:`); `step` counts
// completed optimizer steps. It decides itself whether to act at a given point.
using PolicyHook = std::function<void(RunContext& ctx, QwenForCausalLMImpl& policy, int64_t step, HookPoint when)>;

struct RunContext {
  Recipe recipe;
  std::string run_dir;
  std::string base_dir;  // HF folder of the base model
  std::string tokenizer_dir;  // folder with tokenizer.json (the base's own)
  std::string tokenizer_sha256;
  std::string cache_dir;  // tokenized shards and preset bases
  int rank = 0, world_size = 1;
  Distributed* dist = nullptr;  // collectives across ranks (a world of one when not launched)
  nlohmann::json manifest;  // trainers add what they know (data hash, counts)
  PolicyHook policy_hook;  // may be empty
  // Set by check_method_options: the trainer reads and validates its options, then returns without
  // loading a model or data (posttrain variants checks every variant this way before training any).
  bool only_check_options = false;

  void run_policy_hook(QwenForCausalLMImpl& policy, int64_t step, HookPoint when) {
    if (policy_hook) policy_hook(*this, policy, step, when);
  }

  // Appends to this rank's log file (logs/rank-R.log) and, unless to_stderr is false, prints it.
  void log_event(const std::string& text, bool to_stderr = true) const;

  void log_metrics(const nlohmann::json& record) const;  // appends a line to metrics.jsonl (rank 0)
  void write_manifest() const;
};

using Trainer = std::function<void(RunContext&)>;

// The registry of trainers by method name (`method:` in a recipe), each with a one-line description
// and the kind of records its data holds ("sft", "preference", "unpaired" or "prompts"), which
// `posttrain prepare-data` tokenizes ahead of a run.
void register_trainer(const std::string& method, Trainer trainer, const std::string& description,
                      const std::string& data_kind = "sft");
std::string trainer_data_kind(const std::string& method);  // "" for an unknown method
std::vector<std::string> trainer_names();
const Trainer* find_trainer(const std::string& method);  // nullptr for an unknown method
std::string trainer_description(const std::string& method);

struct RunOptions {
  std::vector<std::string> overrides;  // key.sub=value
  std::string tokenizer_dir;  // for preset bases
  std::string command_line;
  // Builds the run's policy hook once the context is set up (rank, run dir, base), before any
  // training; it may throw UserError for a bad `evals:` entry. Empty: no hook.
  std::function<PolicyHook(const RunContext&)> make_policy_hook;
  // Resume from output_dir's checkpoint even when the recipe's settings differ from the ones it was
  // written with (the differences go into the manifest); otherwise that is refused.
  bool resume_with_changes = false;
};

// The settings in which two resolved recipes differ, as "key: old -> new" (dotted keys, sorted);
// `evals` aside, since eval hooks do not change the weights.
std::vector<std::string> recipe_differences(const std::string& old_yaml, const std::string& new_yaml);

// Runs the recipe to completion; UserError for bad recipes or data before any training starts.
void run_recipe(const std::string& recipe_path, const RunOptions& options);

// Validates the recipe and its method's options (its trainer runs up to its options check, with
// RunContext::only_check_options set), loading no model or data: UserError naming file:line:key
// for a bad one. Folders an earlier variant will write (a reward model, a judge) need not exist.
void check_method_options(const std::string& recipe_path, int world_size);

// Thrown by setup_lm_training when only options are being checked: a plugin trainer that does not
// return on only_check_options still stops before it loads anything.
struct OptionsChecked {};

// The cache folder: $POSTTRAIN_CACHE, else $XDG_CACHE_HOME/posttrain, else ~/.cache/posttrain.
std::string cache_root();

// sha256 over a HF folder's weight files (names and contents), independent of file times.
std::string model_weights_sha256(const std::string& dir);

}  // namespace posttrain
