#include "trainers/run.h"

#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "launch/cpu_threads.h"
#include "models/checkpoint.h"
#include "models/config.h"
#include "models/lora.h"
#include "models/tokenizer.h"
#include "trainers/checkpointing.h"
#include "trainers/plugin.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

struct RegisteredTrainer {
  Trainer run;
  std::string description;
  std::string data_kind;
};

std::map<std::string, RegisteredTrainer>& registry() {
  static std::map<std::string, RegisteredTrainer> trainers;
  return trainers;
}

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// A preset base is built once per (preset, seed, tokenizer) into the cache, atomically. With its own
// tokenizer (base.tokenizer), the vocabulary and the special ids follow that tokenizer.
std::string resolve_base(const BaseSpec& base, const std::string& default_tokenizer_dir) {
  if (base.preset.empty()) {
    if (!fs::is_directory(base.path)) fail(base.path, "base model folder not found");
    return base.path;
  }
  QwenConfig config = preset_config(base.preset);
  std::string name = base.preset + "-seed" + std::to_string(base.seed);
  const std::string tokenizer_dir = base.tokenizer.empty() ? default_tokenizer_dir : base.tokenizer;
  if (!base.tokenizer.empty()) {
    const Tokenizer tokenizer = Tokenizer::from_dir(base.tokenizer);
    config.vocab_size = (tokenizer.id_count() + 63) / 64 * 64;
    config.eos_token_id = tokenizer.eos_id();
    config.bos_token_id = config.pad_token_id = tokenizer.pad_id();
    name += "-tokenizer-" + sha256_file(base.tokenizer + "/tokenizer.json").substr(0, 12);
  }
  const std::string dir = (fs::path(cache_root()) / "bases" / name).string();
  if (fs::exists(dir)) return dir;
  fs::create_directories(fs::path(dir).parent_path());
  QwenForCausalLM model(config);
  init_weights(*model, base.seed);
  SaveOptions options;
  options.tokenizer_dir = tokenizer_dir;
  std::cerr << "posttrain: building base " << base.preset << " (seed " << base.seed << ") into " << dir << "\n";
  // Another process may be building the same base: build under a private name, then rename; if the
  // rename loses the race, the winner's identical folder is used.
  const std::string mine = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(mine);
  save_model(*model, mine, options);
  std::error_code ec;
  fs::rename(mine, dir, ec);
  if (ec) fs::remove_all(mine);
  return dir;
}

}  // namespace

void register_trainer(const std::string& method, Trainer trainer, const std::string& description,
                      const std::string& data_kind) {
  registry()[method] = {std::move(trainer), description, data_kind};
}

const Trainer* find_trainer(const std::string& method) {
  auto it = registry().find(method);
  return it == registry().end() ? nullptr : &it->second.run;
}

std::string trainer_data_kind(const std::string& method) {
  auto it = registry().find(method);
  return it == registry().end() ? "" : it->second.data_kind;
}

std::string trainer_description(const std::string& method) {
  auto it = registry().find(method);
  return it == registry().end() ? "" : it->second.description;
}

std::vector<std::string> trainer_names() {
  std::vector<std::string> names;
  for (const auto& [name, trainer] : registry()) names.push_back(name);
  return names;
}

std::string cache_root() {
  if (const char* env = std::getenv("POSTTRAIN_CACHE")) return env;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME")) return std::string(xdg) + "/posttrain";
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.cache/posttrain";
  return ".cache/posttrain";
}

std::string model_weights_sha256(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors" && name != "optimizer.safetensors")
      files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  std::string combined;
  for (const auto& f : files) combined += f + " " + sha256_file((fs::path(dir) / f).string()) + "\n";
  // An adapter is its weights on its base: two equal adapters on other bases are other models.
  if (is_adapter_dir(dir)) {
    const AdapterConfig adapter = read_adapter_config(dir);
    combined += "base " + model_weights_sha256(adapter_base_dir(dir, adapter)) + "\n";
    combined += "r " + std::to_string(adapter.lora.rank) + " alpha " + std::to_string(adapter.lora.alpha) +
                (adapter.rslora ? " rslora" : "") + "\n";
  }
  return sha256_hex(combined);
}

void RunContext::log_metrics(const nlohmann::json& record) const {
  if (rank != 0) return;
  std::ofstream out((fs::path(run_dir) / "metrics.jsonl").string(), std::ios::app);
  out << record.dump() << "\n";
}

void RunContext::log_event(const std::string& text, bool to_stderr) const {
  if (to_stderr) std::cerr << "posttrain: " << text << "\n";
  fs::create_directories(fs::path(run_dir) / "logs");
  std::ofstream out((fs::path(run_dir) / "logs" / ("rank-" + std::to_string(rank) + ".log")).string(), std::ios::app);
  out << now_iso8601() << " " << text << "\n";
}

void RunContext::write_manifest() const {
  if (rank != 0) return;
  write_file_atomic((fs::path(run_dir) / "manifest.json").string(), manifest.dump(2) + "\n");
}

namespace {

// Checked before any work: an output_dir that is a file, read-only or on a pseudo file system
// (/proc) would otherwise fail minutes into training, at the first checkpoint.
void check_output_dir(const std::string& dir, const std::string& where) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail(where, dir + " is a file, not a folder");
  fs::create_directories(dir, ec);
  if (ec) fail(where, "cannot create " + dir + " (" + ec.message() + ")");
  const std::string probe = (fs::path(dir) / (".write-test-" + std::to_string(::getpid()))).string();
  errno = 0;
  std::ofstream out(probe);
  out << "ok\n";
  out.close();
  const bool writable = !out.fail();
  const std::string cause = errno != 0 ? std::strerror(errno) : "cannot write";
  fs::remove(probe, ec);
  if (!writable) fail(where, dir + " is not writable (" + cause + ")");
}

void flatten_yaml(const YAML::Node& node, const std::string& at, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) flatten_yaml(kv.second, (at.empty() ? "" : at + ".") + kv.first.Scalar(), out);
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) flatten_yaml(node[i], at + "[" + std::to_string(i) + "]", out);
    if (node.size() == 0) out[at] = "[]";
  } else {
    out[at] = node.IsNull() ? "null" : node.Scalar();
  }
}

}  // namespace

std::vector<std::string> recipe_differences(const std::string& old_yaml, const std::string& new_yaml) {
  std::map<std::string, std::string> before, after;
  flatten_yaml(YAML::Load(old_yaml), "", before);
  flatten_yaml(YAML::Load(new_yaml), "", after);
  std::set<std::string> keys;
  for (const auto& [k, v] : before) keys.insert(k);
  for (const auto& [k, v] : after) keys.insert(k);
  std::vector<std::string> differences;
  for (const auto& key : keys) {
    if (key == "evals" || key.rfind("evals[", 0) == 0) continue;
    const auto b = before.find(key), a = after.find(key);
    const std::string was = b == before.end() ? "(unset)" : b->second, now = a == after.end() ? "(unset)" : a->second;
    if (was != now) differences.push_back(key + ": " + was + " -> " + now);
  }
  return differences;
}

void check_method_options(const std::string& recipe_path, int world_size) {
  RunContext ctx;
  ctx.recipe = parse_recipe(recipe_path, {}, world_size);
  ctx.world_size = world_size;
  ctx.run_dir = ctx.recipe.output_dir;
  ctx.only_check_options = true;
  load_plugins(ctx.recipe.plugins);
  const Trainer* trainer = find_trainer(ctx.recipe.method);
  if (trainer == nullptr) throw UserError(recipe_path + ": method \"" + ctx.recipe.method + "\" is not registered");
  try {
    (*trainer)(ctx);
  } catch (const OptionsChecked&) {
  }
}

void run_recipe(const std::string& recipe_path, const RunOptions& options) {
  RunContext ctx;
  // The recipe is validated against the launched world size before the process group forms.
  ctx.recipe = parse_recipe(recipe_path, options.overrides, launched_world_size());
  // A resume continues the weights in output_dir: refused when they were trained with other
  // settings, since the manifest would describe settings the weights never had. Read before the
  // process group forms, so every rank reads the old resolved recipe before rank 0 replaces it.
  std::vector<std::string> changes;
  const fs::path old_resolved = fs::path(ctx.recipe.output_dir) / "recipe.resolved.yaml";
  if (ctx.recipe.checkpoint.resume == "auto" && fs::exists(old_resolved) && latest_checkpoint(ctx.recipe.output_dir)) {
    changes = recipe_differences(read_file(old_resolved.string()), resolved_recipe_yaml(ctx.recipe));
    if (!changes.empty() && !options.resume_with_changes) {
      std::string list;
      for (const auto& c : changes) list += (list.empty() ? "" : "; ") + c;
      throw UserError(ctx.recipe.output_dir + ": holds a run of other settings (" + list +
                      "); resuming would continue weights trained with those. Use a new output_dir, "
                      "checkpoint.resume=none to start over, or --resume-with-changes to continue anyway");
    }
  }
  load_plugins(ctx.recipe.plugins);
  auto it = registry().find(ctx.recipe.method);
  if (it == registry().end()) {
    std::string names;
    for (const auto& n : trainer_names()) names += (names.empty() ? "" : ", ") + n;
    throw UserError(recipe_path + ": method \"" + ctx.recipe.method + "\" is not registered (known: " + names + ")");
  }
  std::unique_ptr<Distributed> dist = init_distributed_from_env(ctx.recipe.train.device);
  ctx.dist = dist.get();
  ctx.rank = dist->rank();
  ctx.world_size = dist->world_size();
  ctx.run_dir = ctx.recipe.output_dir;
  ctx.cache_dir = cache_root();
  ctx.base_dir = resolve_base(ctx.recipe.base, options.tokenizer_dir);
  ctx.tokenizer_dir = ctx.base_dir;
  ctx.tokenizer_sha256 = sha256_file(ctx.base_dir + "/tokenizer.json");
  check_output_dir(ctx.run_dir, recipe_path + ": output_dir");
  ctx.log_event("rank " + std::to_string(ctx.rank) + " of " + std::to_string(ctx.world_size) + ": " +
                ctx.recipe.method + " run in " + ctx.run_dir);
  if (ctx.rank == 0)
    write_file_atomic((fs::path(ctx.run_dir) / "recipe.resolved.yaml").string(), resolved_recipe_yaml(ctx.recipe));

  ctx.manifest = {{"recipe", fs::absolute(recipe_path).string()},
                  {"method", ctx.recipe.method},
                  {"plugins", ctx.recipe.plugins},
                  {"status", "running"},
                  {"seed", ctx.recipe.seed},
                  {"world_size", ctx.world_size},
                  {"base",
                   {{"path", fs::absolute(ctx.base_dir).string()},
                    {"sha256", model_weights_sha256(ctx.base_dir)},
                    {"preset", ctx.recipe.base.preset}}},
                  {"tokenizer_sha256", ctx.tokenizer_sha256},
                  {"budget", {{"steps", ctx.recipe.train.steps}, {"batch_size", ctx.recipe.train.batch_size}}},
                  {"versions", {{"posttrain", "0.1.0"}, {"libtorch", TORCH_VERSION}}},
                  {"cpu_threads",
                   {{"torch", configured_cpu_threads().threads},
                    {"blas", configured_cpu_threads().blas_threads},
                    {"blas_build", configured_cpu_threads().blas}}},
                  {"command_line", options.command_line},
                  {"started_at", now_iso8601()}};
  if (!changes.empty()) ctx.manifest["resumed_with_changes"] = changes;
  ctx.write_manifest();
  try {
    if (options.make_policy_hook) ctx.policy_hook = options.make_policy_hook(ctx);
    it->second.run(ctx);
  } catch (const std::exception& e) {
    ctx.log_event(std::string("failed: ") + e.what(), /*to_stderr=*/false);  // main() prints the error
    ctx.manifest["status"] = "failed";
    ctx.manifest["finished_at"] = now_iso8601();
    try {
      ctx.write_manifest();  // the failed save has freed its space, so this usually succeeds even on a full disk
    } catch (const std::exception& manifest_error) {
      std::cerr << "posttrain: warning: could not mark the run failed: " << manifest_error.what() << "\n";
    }
    throw;  // the first error, the one that names the file that failed
  }
  ctx.manifest["status"] = "completed";
  ctx.manifest["finished_at"] = now_iso8601();
  ctx.write_manifest();
}

}  // namespace posttrain
