#include "trainers/checkpointing.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "launch/distributed.h"
#include "models/checkpoint.h"
#include "models/lora.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

const char* kShardIndex = "optimizer.index.json";

std::string shard_file(int rank, int world) {
  char name[64];
  std::snprintf(name, sizeof(name), "optimizer-%05d-of-%05d.safetensors", rank, world);
  return name;
}

// The sharded optimizer's index, or a null json when the file is missing or not one.
nlohmann::json read_shard_index(const fs::path& dir) {
  const fs::path path = dir / kShardIndex;
  if (!fs::exists(path)) return nullptr;
  auto index = nlohmann::json::parse(read_file(path.string()), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() || !index.contains("shards") || !index["shards"].is_array() ||
      !index.contains("total_elements") || !index["total_elements"].is_number_integer())
    return nullptr;
  for (const auto& shard : index["shards"])
    if (!shard.is_object() || !shard.contains("file") || !shard["file"].is_string() || !shard.contains("start") ||
        !shard["start"].is_number_integer() || !shard.contains("length") || !shard["length"].is_number_integer() ||
        shard["file"].get<std::string>().find('/') != std::string::npos)  // a file of this folder, nothing else
      return nullptr;
  return index;
}

// Optimizer state present: the one file, or the index and every shard it lists.
bool optimizer_files_complete(const fs::path& dir) {
  if (fs::exists(dir / "optimizer.safetensors")) return true;
  const auto index = read_shard_index(dir);
  if (index.is_null()) return false;
  for (const auto& shard : index["shards"])
    if (!fs::exists(dir / shard["file"].get<std::string>())) return false;
  return true;
}

std::vector<std::pair<int64_t, std::string>> complete_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::exists(dir)) return found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step-", 0) != 0 || name.find('.') != std::string::npos) continue;
    // Complete: every file a resume reads is there (a folder half removed by an older posttrain, or
    // by hand, is not), trainer_state.json last written of them.
    const fs::path d = entry.path();
    const bool model_files = fs::exists(d / "config.json") &&
                             (fs::exists(d / "model.safetensors") || fs::exists(d / "model.safetensors.index.json"));
    const bool adapter_files = fs::exists(d / "adapter_config.json") && fs::exists(d / "adapter_model.safetensors");
    if (!fs::exists(d / "trainer_state.json") || !optimizer_files_complete(d) || !(model_files || adapter_files))
      continue;
    found.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Deletes a checkpoint folder so that no moment of it looks complete: renamed first (one atomic
// step) to a name complete_checkpoints skips, then removed. A kill mid-removal leaves only a
// `.deleting` folder, which the next prune clears.
void remove_checkpoint(const fs::path& dir) {
  const fs::path doomed = dir.string() + ".deleting";
  fs::remove_all(doomed);
  fs::rename(dir, doomed);
  fs::remove_all(doomed);
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  return (fs::path(run_dir) / "checkpoints" / name).string();
}

void prune_checkpoints(const std::string& run_dir, int64_t keep_last) {
  auto all = complete_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) remove_checkpoint(all[i].second);
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::exists(dir)) return;
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".deleting") leftovers.push_back(entry.path());
  for (const auto& p : leftovers) fs::remove_all(p);
}

void save_training_checkpoint(QwenForCausalLMImpl& model, const AdamW& optimizer, int64_t step,
                              const std::string& run_dir, const std::string& tokenizer_dir, int64_t keep_last,
                              const nlohmann::json* method_state, Distributed* dist) {
  const bool sharded = optimizer.sharded();
  TORCH_CHECK(!sharded || dist != nullptr, "a sharded optimizer's checkpoint needs the process group");
  const int rank = sharded ? dist->rank() : 0, world = sharded ? dist->world_size() : 1;
  const fs::path final_dir = checkpoint_dir(run_dir, step);
  const fs::path partial = final_dir.string() + ".partial";
  if (rank == 0) {
    fs::create_directories(final_dir.parent_path());
    fs::remove_all(partial);
    if (has_lora(model)) {  // the adapters only: the base is frozen and already on disk
      save_adapter(model, partial.string(), tokenizer_dir);
    } else {
      SaveOptions options;
      options.tokenizer_dir = tokenizer_dir;
      save_model(model, partial.string(), options);  // itself written via <partial>.partial then renamed
    }
  }
  if (sharded) {  // every rank its own shard, into the folder rank 0 made
    dist->barrier();
    write_safetensors((partial / shard_file(rank, world)).string(), optimizer.state_tensors());
    dist->barrier();
    if (rank != 0) return;
  }
  RemoveOnUnwind remove_partial_on_failure(partial.string());
  if (sharded) {
    nlohmann::ordered_json index;
    index["world_size"] = world;
    index["total_elements"] = optimizer.total_elements();
    index["shards"] = nlohmann::json::array();
    for (int r = 0; r < world; ++r) {
      const auto [start, length] = AdamW::shard_range(optimizer.total_elements(), world, r);
      if (!fs::exists(partial / shard_file(r, world)))
        throw std::runtime_error("optimizer shard of rank " + std::to_string(r) + " missing from " + partial.string());
      index["shards"].push_back({{"file", shard_file(r, world)}, {"start", start}, {"length", length}});
    }
    write_file_atomic((partial / kShardIndex).string(), index.dump(2) + "\n");
  } else {
    write_safetensors((partial / "optimizer.safetensors").string(), optimizer.state_tensors());
  }
  nlohmann::json state = {{"step", step}, {"optimizer_steps", optimizer.steps_taken()}};
  if (method_state != nullptr && !method_state->is_null()) state["method"] = *method_state;
  write_file_atomic((partial / "trainer_state.json").string(), state.dump(2) + "\n");
  if (fs::exists(final_dir)) remove_checkpoint(final_dir);
  fs::rename(partial, final_dir);
  prune_checkpoints(run_dir, keep_last);
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  auto all = complete_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

int64_t load_training_checkpoint(const std::string& dir, QwenForCausalLMImpl& model, AdamW& optimizer,
                                 nlohmann::json* method_state) {
  if (is_adapter_dir(dir)) {
    if (!has_lora(model)) fail(dir, "holds LoRA adapters but the run trains every weight (recipe without lora:)");
    load_adapter_weights(model, dir);
  } else {
    if (has_lora(model)) fail(dir, "holds a full model but the run trains LoRA adapters (recipe with lora:)");
    auto saved = load_model(dir);
    torch::NoGradGuard no_grad;
    auto target = model.named_parameters();
    for (const auto& item : saved->named_parameters()) target[item.key()].copy_(item.value());
  }
  if (fs::exists(fs::path(dir) / "optimizer.safetensors")) {
    auto tensors = read_safetensors(dir + "/optimizer.safetensors");
    optimizer.load_state_tensors({tensors.begin(), tensors.end()}, dir + "/optimizer.safetensors");
  } else {  // sharded at whatever world size it was written: laid end to end, then re-sliced
    const std::string index_path = dir + "/" + kShardIndex;
    const auto index = read_shard_index(dir);
    if (index.is_null()) fail(index_path, "missing or not a shard index (world_size, total_elements, shards)");
    std::vector<torch::Tensor> exp_avg, exp_avg_sq;
    int64_t next = 0;
    for (const auto& shard : index["shards"]) {
      const std::string path = dir + "/" + shard["file"].get<std::string>();
      if (shard["start"].get<int64_t>() != next) fail(index_path, "shards do not tile the state (gap or overlap)");
      auto tensors = read_safetensors(path);
      for (const char* key : {"exp_avg", "exp_avg_sq"})
        if (!tensors.count(key) || tensors[key].dim() != 1 || tensors[key].numel() != shard["length"].get<int64_t>())
          fail(path, std::string("'") + key + "' is missing or not of the length the index gives");
      exp_avg.push_back(tensors["exp_avg"]);
      exp_avg_sq.push_back(tensors["exp_avg_sq"]);
      next += shard["length"].get<int64_t>();
    }
    if (next != index["total_elements"].get<int64_t>()) fail(index_path, "shards do not cover total_elements");
    optimizer.load_flat_state(torch::cat(exp_avg), torch::cat(exp_avg_sq), index_path);
  }
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(read_file(dir + "/trainer_state.json"));
  } catch (const nlohmann::json::exception& e) {
    fail(dir + "/trainer_state.json", std::string("not valid JSON: ") + e.what());
  }
  optimizer.set_steps_taken(state.at("optimizer_steps").get<int64_t>());
  if (method_state != nullptr && state.contains("method")) *method_state = state["method"];
  return state.at("step").get<int64_t>();
}

}  // namespace posttrain
