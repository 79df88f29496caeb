// Training checkpoints: <run>/checkpoints/step-NNNNNN/ holds a HF model folder (loadable by
// transformers as is) plus optimizer.safetensors and trainer_state.json. Written under a .partial
// name and renamed when complete, so an interrupted save never looks like a checkpoint.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "models/qwen.h"
#include "trainers/optim.h"

namespace posttrain {

class Distributed;

// `method_state` (optional): a method's own resumable state (e.g. PPO's adaptive KL coefficient),
// stored in trainer_state.json under "method" and handed back by load_training_checkpoint.
// Called by rank 0; with a sharded optimizer (train.zero: 1) by every rank, each writing its shard
// (optimizer-RRRRR-of-WWWWW.safetensors) into the folder rank 0 prepares, then rank 0 the index
// (optimizer.index.json) and trainer_state.json before the folder is renamed: complete only when
// every shard and the index are there.
void save_training_checkpoint(QwenForCausalLMImpl& model, const AdamW& optimizer, int64_t step,
                              const std::string& run_dir, const std::string& tokenizer_dir, int64_t keep_last,
                              const nlohmann::json* method_state = nullptr, Distributed* dist = nullptr);

// <run_dir>/checkpoints/step-NNNNNN, complete or not.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

// Deletes all but the newest `keep_last` complete checkpoints (trainer_state.json, optimizer state,
// config and weights all there), each renamed to step-N.deleting before it is removed.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);

// The newest complete checkpoint folder in the run, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Restores weights and optimizer state; returns the number of optimizer steps already taken. The
// optimizer state may have been written sharded over any number of ranks, or not sharded: it is laid
// end to end and re-sliced for this optimizer.
int64_t load_training_checkpoint(const std::string& dir, QwenForCausalLMImpl& model, AdamW& optimizer,
                                 nlohmann::json* method_state = nullptr);

}  // namespace posttrain
