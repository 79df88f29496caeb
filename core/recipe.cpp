#include "core/recipe.h"

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/yaml_reader.h"

namespace fs = std::filesystem;

namespace posttrain {

std::string resolve_recipe_path(const std::string& file, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return fs::absolute(fs::path(file).parent_path() / path).lexically_normal().string();
}

std::string resolve_setting_path(const std::string& file, const std::string& value, bool set_on_command_line) {
  if (set_on_command_line) return value.empty() ? value : fs::absolute(value).lexically_normal().string();
  return resolve_recipe_path(file, value);
}

YAML::Node resolve_method_paths(const YAML::Node& section, const std::string& file, const std::string& output_dir) {
  if (!section || section.IsNull()) return section;
  // In place, not on a YAML::Clone: a clone loses every node's line, and the trainer's messages about
  // its options (an unknown key) would all point at line 1. Resolving twice changes nothing.
  YAML::Node out = section;
  std::function<void(YAML::Node)> walk = [&](YAML::Node node) {
    if (node.IsSequence()) {
      for (auto item : node) walk(item);
    } else if (node.IsMap()) {
      for (auto kv : node) {
        const std::string key = kv.first.as<std::string>();
        if ((key == "constitution" || key == "judge" || key == "model") && kv.second.IsScalar()) {
          std::string value = kv.second.as<std::string>();
          const size_t at = value.find("${output_dir}");
          if (at != std::string::npos && !output_dir.empty()) value.replace(at, 13, output_dir);
          node[key] = resolve_recipe_path(file, value);
        } else {
          walk(kv.second);
        }
      }
    }
  };
  walk(out);
  return out;
}

namespace {

// The shortest decimal that reads back as exactly `value`, so resolved recipes say 0.003, not
// 0.0030000000000000001, and still reproduce the run bit for bit.
std::string shortest(double value) {
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

}  // namespace

namespace {
Recipe parse_recipe_checked(const std::string& path, const std::vector<std::string>& overrides, int world_size);
}

Recipe parse_recipe(const std::string& path, const std::vector<std::string>& overrides, int world_size) {
  return with_yaml_errors(path, [&] { return parse_recipe_checked(path, overrides, world_size); });
}

namespace {

Recipe parse_recipe_checked(const std::string& path, const std::vector<std::string>& overrides, int world_size) {
  const RecipeTree tree = load_recipe_tree(path, overrides);
  YamlSection root(tree.root, "", path, tree.override_paths);
  Recipe r;
  r.file = path;
  auto resolve = [&](const std::string& key, const std::string& value) {
    const auto& set_here = tree.override_paths;
    return resolve_setting_path(path, value, std::find(set_here.begin(), set_here.end(), key) != set_here.end());
  };
  r.method = root.require<std::string>("method");
  r.seed = root.get<uint64_t>("seed", 0);
  // One rule for every path: relative to the recipe file when written in it, to the current
  // directory when set on the command line. Without one, runs/<recipe name> in the current directory.
  const std::string output_dir = root.get<std::string>("output_dir", "");
  r.output_dir = output_dir.empty() ? "runs/" + fs::path(path).stem().string() : resolve("output_dir", output_dir);
  for (const auto& plugin : root.get<std::vector<std::string>>("plugins", {}))
    r.plugins.push_back(resolve_recipe_path(path, plugin));

  // base: a folder path, or {preset: NAME, seed: S}
  YAML::Node base = root.raw("base");
  if (!base || base.IsNull()) root.fail_at("base", "is required (a HF model folder or {preset: tiny, seed: 0})");
  if (base.IsScalar()) {
    r.base.path = resolve("base", base.as<std::string>());
  } else {
    YamlSection b(base, "base", path, tree.override_paths);
    r.base.preset = b.require<std::string>("preset");
    r.base.seed = b.get<uint64_t>("seed", 0);
    r.base.tokenizer = resolve("base.tokenizer", b.get<std::string>("tokenizer", ""));
    if (!r.base.tokenizer.empty() && !fs::exists(r.base.tokenizer + "/tokenizer.json"))
      b.fail_at("tokenizer", "\"" + r.base.tokenizer + "\" has no tokenizer.json");
    b.finish();
  }

  YamlSection data = root.section("data");
  r.data.train = resolve("data.train", data.require<std::string>("train"));
  r.data.format = data.get<std::string>("format", r.data.format);
  r.data.max_length = data.get<int64_t>("max_length", r.data.max_length);
  r.data.skip_bad_records = data.get<bool>("skip_bad_records", r.data.skip_bad_records);
  r.data.pack = data.get<bool>("pack", r.data.pack);
  if (data.has("chat_template_kwargs")) {
    const YAML::Node kwargs = data.raw("chat_template_kwargs");
    if (!kwargs.IsMap()) data.fail_at("chat_template_kwargs", "must be a mapping of template variables");
    for (const auto& kv : kwargs)
      for (const char* reserved : {"messages", "tools", "documents", "add_generation_prompt"})
        if (kv.first.Scalar() == reserved)
          data.fail_at("chat_template_kwargs", std::string(reserved) + " is set by posttrain, not by the recipe");
    r.data.chat_template_kwargs = yaml_to_typed_json(kwargs).dump();
  }
  if (r.data.format != "auto" && r.data.format != "messages" && r.data.format != "prompt_completion" &&
      r.data.format != "text")
    data.fail_at("format", "must be auto, messages, prompt_completion or text");
  if (r.data.max_length < 2) data.fail_at("max_length", "must be at least 2");
  data.finish();

  YamlSection train = root.section("train");
  TrainSpec& t = r.train;
  t.steps = train.get<int64_t>("steps", t.steps);
  t.batch_size = train.get<int64_t>("batch_size", t.batch_size);
  t.micro_batch_size = train.get<int64_t>("micro_batch_size", t.micro_batch_size);
  t.lr = train.get<double>("lr", t.lr);
  t.weight_decay = train.get<double>("weight_decay", t.weight_decay);
  t.beta1 = train.get<double>("beta1", t.beta1);
  t.beta2 = train.get<double>("beta2", t.beta2);
  t.eps = train.get<double>("eps", t.eps);
  t.warmup_steps = train.get<int64_t>("warmup_steps", t.warmup_steps);
  t.schedule = train.get<std::string>("schedule", t.schedule);
  t.min_lr_ratio = train.get<double>("min_lr_ratio", t.min_lr_ratio);
  t.grad_clip = train.get<double>("grad_clip", t.grad_clip);
  t.on_nonfinite = train.get<std::string>("on_nonfinite", t.on_nonfinite);
  t.device = train.get<std::string>("device", t.device);
  t.precision = train.get<std::string>("precision", t.precision);
  t.log_every = train.get<int64_t>("log_every", t.log_every);
  t.activation_checkpointing = train.get<bool>("activation_checkpointing", t.activation_checkpointing);
  t.zero = train.get<int64_t>("zero", t.zero);
  if (t.steps <= 0) train.fail_at("steps", "must be positive");
  if (t.lr <= 0) train.fail_at("lr", "must be positive, got " + std::to_string(t.lr));
  if (t.weight_decay < 0) train.fail_at("weight_decay", "must be >= 0");
  if (t.beta1 < 0 || t.beta1 >= 1) train.fail_at("beta1", "must be in [0, 1)");
  if (t.beta2 < 0 || t.beta2 >= 1) train.fail_at("beta2", "must be in [0, 1)");
  if (t.eps <= 0) train.fail_at("eps", "must be positive");
  if (t.warmup_steps < 0) train.fail_at("warmup_steps", "must be >= 0");
  if (t.schedule != "cosine" && t.schedule != "linear" && t.schedule != "constant")
    train.fail_at("schedule", "must be cosine, linear or constant");
  if (t.min_lr_ratio < 0 || t.min_lr_ratio > 1) train.fail_at("min_lr_ratio", "must be in [0, 1]");
  if (t.grad_clip < 0) train.fail_at("grad_clip", "must be >= 0 (0 disables clipping)");
  if (t.on_nonfinite != "stop" && t.on_nonfinite != "skip") train.fail_at("on_nonfinite", "must be stop or skip");
  if (t.precision != "fp32" && t.precision != "bf16") train.fail_at("precision", "must be fp32 or bf16");
  if (t.precision == "bf16" && t.device.rfind("cuda", 0) != 0)
    train.fail_at("precision", "bf16 (autocast) needs train.device: cuda; CPU training runs in fp32");
  if (t.zero == 2)
    train.fail_at("zero",
                  "2 (gradients reduce-scattered) needs a backend with reduce-scatter (NCCL); posttrain's "
                  "process groups are Gloo, which has none: use 1 (the gradients are all-reduced, the "
                  "optimizer state and its update are sharded)");
  if (t.zero != 0 && t.zero != 1) train.fail_at("zero", "must be 0 (no sharding) or 1 (sharded optimizer state)");
  if (t.log_every <= 0) train.fail_at("log_every", "must be positive");
  if (t.micro_batch_size <= 0) train.fail_at("micro_batch_size", "must be positive");
  if (t.batch_size <= 0 || t.batch_size % (static_cast<int64_t>(world_size) * t.micro_batch_size) != 0)
    train.fail_at("batch_size", "(" + std::to_string(t.batch_size) + ") must be a positive multiple of world_size (" +
                                    std::to_string(world_size) + ") x micro_batch_size (" +
                                    std::to_string(t.micro_batch_size) + ")");
  train.finish();

  YamlSection lora = root.section("lora");
  if (root.has("lora")) {
    LoraSpec& l = r.lora;
    l.rank = lora.require<int64_t>("rank");
    l.alpha = lora.get<double>("alpha", l.alpha);
    l.dropout = lora.get<double>("dropout", l.dropout);
    l.target_modules = lora.get<std::vector<std::string>>("target_modules", l.target_modules);
    if (l.rank <= 0) lora.fail_at("rank", "must be positive");
    if (l.alpha <= 0) lora.fail_at("alpha", "must be positive");
    if (l.dropout < 0 || l.dropout >= 1) lora.fail_at("dropout", "must be in [0, 1)");
    if (l.dropout > 0 && t.activation_checkpointing)
      lora.fail_at("dropout",
                   "must be 0 with train.activation_checkpointing (the recomputed layer would draw new "
                   "dropout masks, and its gradients would not match the forward)");
    const LoraSpec all;
    if (l.target_modules.empty()) lora.fail_at("target_modules", "must name at least one projection");
    for (size_t i = 0; i < l.target_modules.size(); ++i) {
      const std::string& name = l.target_modules[i];
      if (std::find(all.target_modules.begin(), all.target_modules.end(), name) == all.target_modules.end())
        lora.fail_at("target_modules", "\"" + name +
                                           "\" is not a projection of the Qwen decoder (q_proj, k_proj, v_proj, "
                                           "o_proj, gate_proj, up_proj, down_proj)");
      if (std::find(l.target_modules.begin(), l.target_modules.begin() + static_cast<long>(i), name) !=
          l.target_modules.begin() + static_cast<long>(i))
        lora.fail_at("target_modules", "names " + name + " twice");
    }
    lora.finish();
  }

  YamlSection checkpoint = root.section("checkpoint");
  r.checkpoint.every = checkpoint.get<int64_t>("every", r.checkpoint.every);
  r.checkpoint.keep_last = checkpoint.get<int64_t>("keep_last", r.checkpoint.keep_last);
  r.checkpoint.resume = checkpoint.get<std::string>("resume", r.checkpoint.resume);
  if (r.checkpoint.every < 0) checkpoint.fail_at("every", "must be >= 0");
  if (r.checkpoint.keep_last < 1) checkpoint.fail_at("keep_last", "must be >= 1");
  if (r.checkpoint.resume != "auto" && r.checkpoint.resume != "none")
    checkpoint.fail_at("resume", "must be auto or none");
  checkpoint.finish();

  YAML::Node evals = root.raw("evals");
  if (evals && !evals.IsNull()) {
    if (!evals.IsSequence()) root.fail_at("evals", "must be a list of {suite: NAME|FILE.yaml, ...}");
    for (size_t i = 0; i < evals.size(); ++i) {
      const std::string where = "evals[" + std::to_string(i) + "]";
      if (!evals[i].IsMap()) root.fail_at("evals", "entry " + std::to_string(i) + " must be a mapping with a suite");
      YamlSection entry(evals[i], where, path, tree.override_paths);
      EvalSpec spec;
      spec.suite = entry.require<std::string>("suite");
      const auto ext = fs::path(spec.suite).extension();
      if (ext == ".yaml" || ext == ".yml") spec.suite = resolve_recipe_path(path, spec.suite);
      spec.after_run = entry.get<bool>("after_run", spec.after_run);
      spec.every_n_steps = entry.get<int64_t>("every_n_steps", spec.every_n_steps);
      spec.on_checkpoint = entry.get<bool>("on_checkpoint", spec.on_checkpoint);
      if (spec.every_n_steps < 0) entry.fail_at("every_n_steps", "must be >= 0 (0 = never)");
      spec.options = YAML::Node(YAML::NodeType::Map);
      for (const auto& kv : evals[i]) {
        const auto key = kv.first.as<std::string>();
        if (key == "suite" || key == "after_run" || key == "every_n_steps" || key == "on_checkpoint") continue;
        // Options that name files are relative to the recipe, like every other path in it.
        const bool names_file = key == "data" || key == "reference" || key == "reward_model";
        spec.options[key] = names_file && kv.second.IsScalar()
                                ? YAML::Node(resolve_recipe_path(path, kv.second.as<std::string>()))
                                : kv.second;  // not cloned: the suite's messages keep their lines
      }
      spec.file = path;
      spec.path = where;
      r.evals.push_back(spec);
    }
  }
  r.method_options = resolve_method_paths(root.raw(r.method), path);
  r.overrides = tree.override_paths;
  root.finish();
  return r;
}

}  // namespace

std::string resolved_recipe_yaml(const Recipe& r) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "method" << YAML::Value << r.method;
  out << YAML::Key << "seed" << YAML::Value << r.seed;
  out << YAML::Key << "output_dir" << YAML::Value << fs::absolute(r.output_dir).lexically_normal().string();
  if (!r.plugins.empty()) out << YAML::Key << "plugins" << YAML::Value << r.plugins;
  out << YAML::Key << "base" << YAML::Value;
  if (r.base.preset.empty()) {
    out << r.base.path;
  } else {
    out << YAML::BeginMap << YAML::Key << "preset" << YAML::Value << r.base.preset << YAML::Key << "seed" << YAML::Value
        << r.base.seed;
    if (!r.base.tokenizer.empty()) out << YAML::Key << "tokenizer" << YAML::Value << r.base.tokenizer;
    out << YAML::EndMap;
  }
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "train" << YAML::Value << r.data.train;
  out << YAML::Key << "format" << YAML::Value << r.data.format;
  out << YAML::Key << "max_length" << YAML::Value << r.data.max_length;
  out << YAML::Key << "skip_bad_records" << YAML::Value << r.data.skip_bad_records;
  out << YAML::Key << "pack" << YAML::Value << r.data.pack;
  out << YAML::Key << "chat_template_kwargs" << YAML::Value << YAML::Load(r.data.chat_template_kwargs);  // JSON is YAML
  out << YAML::EndMap;
  const TrainSpec& t = r.train;
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "steps" << YAML::Value << t.steps << YAML::Key << "batch_size" << YAML::Value << t.batch_size;
  out << YAML::Key << "micro_batch_size" << YAML::Value << t.micro_batch_size;
  out << YAML::Key << "lr" << YAML::Value << shortest(t.lr) << YAML::Key << "weight_decay" << YAML::Value
      << shortest(t.weight_decay);
  out << YAML::Key << "beta1" << YAML::Value << shortest(t.beta1) << YAML::Key << "beta2" << YAML::Value
      << shortest(t.beta2);
  out << YAML::Key << "eps" << YAML::Value << shortest(t.eps) << YAML::Key << "warmup_steps" << YAML::Value
      << t.warmup_steps;
  out << YAML::Key << "schedule" << YAML::Value << t.schedule << YAML::Key << "min_lr_ratio" << YAML::Value
      << shortest(t.min_lr_ratio);
  out << YAML::Key << "grad_clip" << YAML::Value << shortest(t.grad_clip) << YAML::Key << "on_nonfinite" << YAML::Value
      << t.on_nonfinite;
  out << YAML::Key << "device" << YAML::Value << t.device << YAML::Key << "precision" << YAML::Value << t.precision
      << YAML::Key << "log_every" << YAML::Value << t.log_every;
  out << YAML::Key << "activation_checkpointing" << YAML::Value << t.activation_checkpointing;
  if (t.zero != 0) out << YAML::Key << "zero" << YAML::Value << t.zero;  // only when set: older runs resolve as before
  out << YAML::EndMap;
  if (r.lora.enabled()) {  // written only when set, so recipes without LoRA resolve as before
    out << YAML::Key << "lora" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "rank" << YAML::Value << r.lora.rank << YAML::Key << "alpha" << YAML::Value
        << shortest(r.lora.alpha) << YAML::Key << "dropout" << YAML::Value << shortest(r.lora.dropout);
    out << YAML::Key << "target_modules" << YAML::Value << YAML::Flow << r.lora.target_modules;
    out << YAML::EndMap;
  }
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "every" << YAML::Value << r.checkpoint.every << YAML::Key << "keep_last" << YAML::Value
      << r.checkpoint.keep_last << YAML::Key << "resume" << YAML::Value << r.checkpoint.resume;
  out << YAML::EndMap;
  if (!r.evals.empty()) {
    out << YAML::Key << "evals" << YAML::Value << YAML::BeginSeq;
    for (const auto& e : r.evals) {
      out << YAML::BeginMap << YAML::Key << "suite" << YAML::Value << e.suite;
      out << YAML::Key << "after_run" << YAML::Value << e.after_run;
      out << YAML::Key << "every_n_steps" << YAML::Value << e.every_n_steps;
      out << YAML::Key << "on_checkpoint" << YAML::Value << e.on_checkpoint;
      for (const auto& kv : e.options) out << YAML::Key << kv.first << YAML::Value << kv.second;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (r.method_options && !r.method_options.IsNull()) out << YAML::Key << r.method << YAML::Value << r.method_options;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace posttrain
