#include "trainers/checkpointing.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "models/checkpoint.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

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
    if (!fs::exists(d / "trainer_state.json") || !fs::exists(d / "optimizer.safetensors") ||
        !fs::exists(d / "config.json") ||
        !(fs::exists(d / "model.safetensors") || fs::exists(d / "model.safetensors.index.json")))
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
                              const nlohmann::json* method_state) {
  const fs::path final_dir = checkpoint_dir(run_dir, step);
  const fs::path partial = final_dir.string() + ".partial";
  fs::create_directories(final_dir.parent_path());
  fs::remove_all(partial);
  RemoveOnUnwind remove_partial_on_failure(partial.string());
  SaveOptions options;
  options.tokenizer_dir = tokenizer_dir;
  save_model(model, partial.string(), options);  // itself written via <partial>.partial then renamed
  write_safetensors((partial / "optimizer.safetensors").string(), optimizer.state_tensors());
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
  auto saved = load_model(dir);
  {
    torch::NoGradGuard no_grad;
    auto target = model.named_parameters();
    for (const auto& item : saved->named_parameters()) target[item.key()].copy_(item.value());
  }
  auto tensors = read_safetensors(dir + "/optimizer.safetensors");
  optimizer.load_state_tensors({tensors.begin(), tensors.end()}, dir + "/optimizer.safetensors");
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
