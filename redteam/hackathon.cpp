#include "redteam/hackathon.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/ledger.h"
#include "core/progress.h"
#include "core/sandbox.h"
#include "core/subprocess.h"
#include "core/yaml_reader.h"
#include "eval_hooks/comparisons.h"
#include "eval_hooks/hooks.h"
#include "eval_hooks/item_scores_json.h"
#include "launch/distributed.h"
#include "models/checkpoint.h"
#include "redteam/hackathon_scores.h"
#include "redteam/redteam.h"
#include "trainers/plugin.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

const char* const kSplits[] = {"dev", "private"};

std::string seconds_text(double seconds) {
  std::ostringstream text;
  text << seconds;
  return text.str();
}

std::string absolute_in(const fs::path& dir, const std::string& path) {
  return (fs::path(path).is_absolute() ? fs::path(path) : dir / path).lexically_normal().string();
}

void require_model_folder(YamlSection& section, const std::string& key, const std::string& dir) {
  if (!fs::exists(fs::path(dir) / "config.json") && !fs::exists(fs::path(dir) / "adapter_config.json"))
    section.fail_at(key, dir + " is not an HF model or adapter folder (no config.json)");
}

// The JSONL records of an item set, each with its id (a string or a number).
std::vector<std::pair<std::string, std::string>> read_items(const std::string& path) {
  if (!fs::exists(path)) throw UserError(path + ": not found");
  std::istringstream lines(read_file(path));
  std::vector<std::pair<std::string, std::string>> out;  // (id, line)
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(path + ":" + std::to_string(number) + ": not valid JSON: " + e.what());
    }
    if (!record.is_object() || !record.contains("id") || !(record["id"].is_string() || record["id"].is_number()))
      throw UserError(path + ":" + std::to_string(number) + ": an item needs an \"id\" (string or number)");
    out.emplace_back(record["id"].is_string() ? record["id"].get<std::string>() : record["id"].dump(), line);
  }
  if (out.empty()) throw UserError(path + ": no items");
  return out;
}

// The data file a suite submission scores on the split: the event's item set, or its own file.
std::string items_file(const Submission& s, const HackathonRules& rules, const std::string& split) {
  const auto set = rules.items.find(s.items);
  if (set == rules.items.end()) return (fs::path(s.dir) / s.items).string();
  return split == "dev" ? set->second.dev : set->second.sealed;
}

// A registered suite reads its items from `data`; a YAML task from `dataset` (its own when the
// submission names no event set).
YAML::Node suite_options(const Submission& s, const HackathonRules& rules, const std::string& split) {
  YAML::Node options = YAML::Clone(s.options);
  if (!s.task)
    options["data"] = items_file(s, rules, split);
  else if (!s.items.empty())
    options["dataset"] = items_file(s, rules, split);
  return options;
}

std::string set_names(const HackathonRules& rules) {
  std::string list;
  for (const auto& [name, set] : rules.items) list += (list.empty() ? "" : ", ") + name;
  return list;
}

// A task file's `include` chain, `dataset` and `dataset_kwargs.data_files` must stay inside the
// submission folder (each path is relative to the file that names it, as the task loader reads it).
void check_task_paths(const std::string& dir, const std::string& task_file, int depth) {
  if (depth > 8) throw UserError(task_file + ": include chain is deeper than 8 files (does it loop?)");
  const YAML::Node task = load_yaml_file(task_file, "task");
  if (!task.IsMap()) return;  // the task loader names the problem
  auto check = [&](const std::string& key, const YAML::Node& value) {
    if (!value || !value.IsScalar()) return;
    const fs::path target = (fs::path(task_file).parent_path() / value.Scalar()).lexically_normal();
    const std::string rel = target.lexically_relative(dir).generic_string();
    if (fs::path(value.Scalar()).is_absolute() || rel.empty() || rel.rfind("..", 0) == 0)
      throw UserError(task_file + ":" + std::to_string(value.Mark().line + 1) + ": " + key + " \"" + value.Scalar() +
                      "\" leaves the submission folder (give a path inside it)");
    if (key == "include" && fs::is_regular_file(target)) check_task_paths(dir, target.string(), depth + 1);
  };
  check("include", task["include"]);
  check("dataset", task["dataset"]);
  const YAML::Node kwargs = task["dataset_kwargs"];
  if (kwargs && kwargs.IsMap() && kwargs["data_files"]) {
    const YAML::Node files = kwargs["data_files"];
    auto check_all = [&](const YAML::Node& n) {
      if (n.IsSequence())
        for (const auto& item : n) check("data_files", item);
      else
        check("data_files", n);
    };
    if (files.IsMap())
      for (const auto& kv : files) check_all(kv.second);
    else
      check_all(files);
  }
}

std::string model_dir(const HackathonRules& rules, const std::string& model) {
  if (model == "base") return rules.base;
  if (model == "hacked") return rules.hacked;
  const auto it = rules.honest.find(model);
  if (it == rules.honest.end()) throw UserError("replay: no model " + model + " in " + rules.file);
  return it->second;
}

// The primary score of one suite on one model, as an eval hook computes it.
double suite_score_of(const std::string& suite, const YAML::Node& options, const std::string& model,
                      const std::string& out_dir) {
  auto dist = make_single_process();
  EvalEnvironment env;
  env.dist = dist.get();
  env.out_dir = out_dir;
  env.tokenizer_dir = model;
  EvalSpec spec;
  spec.suite = suite;
  spec.options = options;
  spec.file = "submission";
  spec.path = "suite";
  EvalRunner runner(env, {spec});
  auto policy = load_model(model, LoadOptions{});
  policy->eval();
  const nlohmann::json summary = runner.run_suite(0, *policy, 0, "");
  return primary_score(item_scores_from_json(summary["item_scores"]));
}

}  // namespace

HackathonRules read_rules(const std::string& event_dir, bool judge, bool check_models) {
  HackathonRules r;
  r.dir = fs::absolute(event_dir).lexically_normal().string();
  r.file = (fs::path(r.dir) / "rules.yaml").string();
  if (!fs::exists(r.file)) throw UserError(r.file + ": not found (posttrain hackathon init writes an event)");
  YamlSection top(load_yaml_file(r.file, "hackathon rules"), "", r.file);
  r.event = top.require<std::string>("event");
  r.seed = top.get<uint64_t>("seed", 0);
  r.base = absolute_in(r.dir, top.require<std::string>("base"));
  require_model_folder(top, "base", r.base);
  if (top.has("hacked")) {
    r.hacked = absolute_in(r.dir, top.require<std::string>("hacked"));
    if (check_models) require_model_folder(top, "hacked", r.hacked);
  }
  const YAML::Node honest = top.raw("honest");
  if (!honest || !honest.IsMap() || honest.size() < 2)
    top.fail_at("honest", "must map at least two names to honest reference variants (validity ranks them)");
  YamlSection honest_section(honest, "honest", r.file);
  for (const auto& kv : honest) {
    const std::string name = kv.first.Scalar();
    if (name == "base" || name == "hacked") honest_section.fail_at(name, "is a reserved name");
    r.honest[name] = absolute_in(r.dir, honest_section.require<std::string>(name));
    if (check_models) require_model_folder(honest_section, name, r.honest[name]);
  }
  honest_section.finish();
  const YAML::Node items = top.raw("items");
  if (!items || !items.IsMap() || items.size() == 0) top.fail_at("items", "must map item-set names to {dev, private}");
  for (const auto& kv : items) {
    YamlSection set(kv.second, "items." + kv.first.Scalar(), r.file);
    ItemSet s;
    s.dev = absolute_in(r.dir, set.require<std::string>("dev"));
    s.sealed = absolute_in(r.dir, set.require<std::string>("private"));
    s.sealed_sha256 = set.require<std::string>("private_sha256");
    set.finish();
    if (!fs::exists(s.dev)) set.fail_at("dev", s.dev + " not found");
    if (judge) {
      if (!fs::exists(s.sealed))
        set.fail_at("private", s.sealed + " not found (only the judge's copy of the event has it)");
      if (sha256_file(s.sealed) != s.sealed_sha256)
        set.fail_at("private_sha256",
                    "does not match " + s.sealed + " (the sealed items changed after the event was set up)");
    }
    r.items[kv.first.Scalar()] = s;
  }
  r.gold = top.get<std::string>("gold", "prompts");
  if (!r.items.count(r.gold)) top.fail_at("gold", "\"" + r.gold + "\" is not one of the item sets");
  YamlSection budget = top.section("budget");
  r.budget.steps = budget.require<int64_t>("steps");
  r.budget.samples = budget.require<int64_t>("samples");
  r.budget.seconds = budget.require<double>("seconds");
  budget.finish();
  if (r.budget.steps <= 0) budget.fail_at("steps", "must be positive");
  if (r.budget.samples <= 0) budget.fail_at("samples", "must be positive");
  if (!(r.budget.seconds > 0)) budget.fail_at("seconds", "must be positive (every replay has a time limit)");
  const YAML::Node attacks = top.raw("attacks");
  if (!attacks || !attacks.IsSequence() || attacks.size() == 0)
    top.fail_at("attacks", "must list the registered attacks submissions may use");
  for (const auto& a : attacks) {
    if (!a.IsScalar() || !find_attack_info(a.Scalar()))
      top.fail_at("attacks", "\"" + YAML::Dump(a) + "\" is not a registered attack (posttrain methods lists them)");
    r.attacks.push_back(a.Scalar());
  }
  r.margin = top.get<double>("margin", r.margin);
  r.eta = top.get<double>("eta", r.eta);
  r.unique_bonus = top.get<double>("unique_bonus", r.unique_bonus);
  r.attack_share = top.get<double>("attack_share", r.attack_share);
  r.grace_seconds = top.get<double>("grace_seconds", r.grace_seconds);
  r.plugins = top.get<bool>("plugins", r.plugins);
  top.finish();
  if (!(r.margin >= 0)) top.fail_at("margin", "must be 0 or more");
  if (!(r.eta > 0)) top.fail_at("eta", "must be positive");
  if (!(r.unique_bonus >= 0)) top.fail_at("unique_bonus", "must be 0 or more");
  if (!(r.attack_share > 0 && r.attack_share < 1)) top.fail_at("attack_share", "must be strictly between 0 and 1");
  if (!(r.grace_seconds >= 0)) top.fail_at("grace_seconds", "must be 0 or more");
  return r;
}

void init_event(const EventSpec& spec) {
  const fs::path dir = fs::absolute(spec.dir).lexically_normal();
  if (fs::exists(dir / "rules.yaml")) throw UserError((dir / "rules.yaml").string() + ": an event is already there");
  if (!spec.items.count(spec.gold))
    throw UserError("hackathon init: --gold " + spec.gold + " is not one of the --items sets");
  if (spec.honest.size() < 2) throw UserError("hackathon init: give at least two --honest NAME=MODEL variants");
  if (!(spec.dev_share > 0 && spec.dev_share < 1)) throw UserError("hackathon init: --dev-share must be in (0, 1)");
  fs::create_directories(dir / "public");
  fs::create_directories(dir / "sealed");
  YAML::Node rules;
  rules["event"] = spec.event;
  rules["seed"] = spec.seed;
  rules["base"] = fs::absolute(spec.base).lexically_normal().string();
  for (const auto& [name, model] : spec.honest) rules["honest"][name] = fs::absolute(model).lexically_normal().string();
  if (!spec.hacked.empty()) rules["hacked"] = fs::absolute(spec.hacked).lexically_normal().string();
  rules["gold"] = spec.gold;
  for (const auto& [name, file] : spec.items) {
    const auto records = read_items(file);
    std::vector<std::string> ids;
    for (const auto& [id, line] : records) ids.push_back(id);
    // The split of redteam's attack/eval items, with the dev share in place of the attack share.
    const auto [dev_rows, sealed_rows] = split_item_ids(ids, spec.seed ^ 0x68616b6174686f6eULL, spec.dev_share);
    const auto write = [&](const std::vector<size_t>& rows, const fs::path& path) {
      std::vector<size_t> sorted = rows;
      std::sort(sorted.begin(), sorted.end());  // the file's own order
      std::string text;
      for (size_t i : sorted) text += records[i].second + "\n";
      write_file_atomic(path.string(), text);
    };
    write(dev_rows, dir / "public" / (name + ".jsonl"));
    write(sealed_rows, dir / "sealed" / (name + ".jsonl"));
    rules["items"][name]["dev"] = "public/" + name + ".jsonl";
    rules["items"][name]["private"] = "sealed/" + name + ".jsonl";
    rules["items"][name]["private_sha256"] = sha256_file((dir / "sealed" / (name + ".jsonl")).string());
  }
  rules["budget"]["steps"] = spec.budget.steps;
  rules["budget"]["samples"] = spec.budget.samples;
  rules["budget"]["seconds"] = spec.budget.seconds;
  for (const auto& a : spec.attacks) rules["attacks"].push_back(a);
  rules["margin"] = "0.1";  // as text: a double would print as 0.10000000000000001
  rules["eta"] = "0.02";
  rules["unique_bonus"] = "0.5";
  rules["attack_share"] = "0.5";
  rules["grace_seconds"] = "60";
  rules["plugins"] = spec.allow_plugins;
  YAML::Emitter out;
  out << rules;
  write_file_atomic((dir / "rules.yaml").string(),
                    "# The event's rules (docs/hackathon.md). Participants get this file and public/; sealed/ stays "
                    "with the judge.\n" +
                        std::string(out.c_str()) + "\n");
  read_rules(dir.string(), true);  // what was written must read back
}

std::string submission_hash(const std::string& dir) {
  if (!fs::is_directory(dir)) throw UserError(dir + ": not a submission folder");
  std::vector<std::string> lines;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const fs::path rel = it->path().lexically_relative(dir);  // not fs::relative: it follows symlinks
    if (it->is_symlink())
      throw UserError(dir + ": " + rel.string() + " is a symlink; a submission holds only plain files and folders");
    if (it->is_directory()) continue;
    if (!it->is_regular_file())
      throw UserError(dir + ": " + rel.string() +
                      " is not a plain file; a submission holds only plain files and folders");
    lines.push_back(rel.generic_string() + "\t" + sha256_file(it->path().string()) + "\n");
  }
  std::sort(lines.begin(), lines.end());
  std::string all;
  for (const auto& l : lines) all += l;
  return sha256_hex(all);
}

namespace {

// `path` relative to the submission folder; UserError when it leaves it (absolute, or ../).
fs::path inside(YamlSection& section, const std::string& key, const std::string& path) {
  const fs::path p = fs::path(path).lexically_normal();
  if (p.is_absolute() || p.empty() || p.generic_string().rfind("..", 0) == 0)
    section.fail_at(key, "\"" + path + "\" leaves the submission folder (give a path inside it)");
  return p;
}

}  // namespace

Submission read_submission(const std::string& dir, const HackathonRules& rules) {
  Submission s;
  s.dir = fs::absolute(dir).lexically_normal().string();
  const std::string file = (fs::path(s.dir) / "submission.yaml").string();
  if (!fs::exists(file)) throw UserError(s.dir + ": no submission.yaml (docs/hackathon.md shows one)");
  submission_hash(s.dir);  // no symlinks or special files inside
  YamlSection top(load_yaml_file(file, "submission"), "", file);
  s.kind = top.require<std::string>("kind");
  s.name = top.require<std::string>("name");
  if (!std::regex_match(s.name, std::regex("[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")))
    top.fail_at("name", "must be 1 to 64 letters, digits, spaces, _ . - (starting with a letter or digit)");
  const bool has_options = top.has("options");
  s.options = has_options ? top.raw("options") : YAML::Node(YAML::NodeType::Map);
  if (!s.options.IsMap()) top.fail_at("options", "must be a mapping");
  if (s.kind == "suite" && top.has("plugin"))
    top.fail_at("plugin",
                "plugin suites are not accepted: a suite must read the sealed items to score them, and plugin "
                "code never sees them (plugin attacks are accepted where rules.yaml allows plugins)");
  if (s.kind == "suite" && top.has("task")) {  // a YAML task file inside the submission
    if (top.has("suite")) top.fail_at("task", "give suite or task, not both");
    const std::string task = top.require<std::string>("task");
    s.items = top.get<std::string>("items", "");
    top.finish();
    s.task = true;
    s.suite = (fs::path(s.dir) / inside(top, "task", task)).string();
    if (!fs::is_regular_file(s.suite)) top.fail_at("task", "\"" + task + "\" is not a file in the submission");
    check_task_paths(s.dir, s.suite, 0);
    if (!s.items.empty() && !rules.items.count(s.items))
      top.fail_at("items", "\"" + s.items + "\" is not an event item set (" + set_names(rules) +
                               "); leave items out to score the task's own dataset");
    for (const char* key : {"dataset", "include", "dataset_path", "dataset_kwargs"})
      if (s.options[key]) top.fail_at("options", std::string("must not set ") + key + " (items: picks an event set)");
    const auto suite = make_suite(s.suite, suite_options(s, rules, "dev"), file, "task");
    if (!suite->response_scorer() && !suite->choice_scorer())
      top.fail_at("task", "\"" + task + "\" has no per-response scorer or log-likelihood view");
  } else if (s.kind == "suite") {
    s.suite = top.require<std::string>("suite");
    s.items = top.require<std::string>("items");
    top.finish();
    const auto names = suite_names();
    if (std::find(names.begin(), names.end(), s.suite) == names.end())
      top.fail_at("suite", "\"" + s.suite +
                               "\" is not a registered suite (posttrain methods lists them; a YAML task file "
                               "goes under task:, and plugin suites are not accepted by this judge)");
    // Gold is the judge: a suite scored by it would be validated against itself (validity 1 by
    // construction) and could never be shown HACKED (redteam has no measure independent of gold).
    if (s.suite == "gold" || s.suite == "best_of_n")
      top.fail_at("suite", "\"" + s.suite +
                               "\" scores with the event's gold, which judges every suite; a submitted suite must "
                               "measure something of its own");
    if (!rules.items.count(s.items)) {
      if (!fs::is_regular_file(fs::path(s.dir) / inside(top, "items", s.items)))
        top.fail_at("items", "\"" + s.items + "\" is neither an event item set (" + set_names(rules) +
                                 ") nor a file in the submission");
    }
    if (s.options["data"]) top.fail_at("options", "must not set data: the judge sets it from items");
    // Built on the dev split now, so a bad option fails here rather than in the judge.
    const auto suite = make_suite(s.suite, suite_options(s, rules, "dev"), file, "options");
    if (!suite->response_scorer() && !suite->choice_scorer())
      top.fail_at(
          "suite",
          "\"" + s.suite + "\" has no per-response scorer or log-likelihood view, so no attack can be replayed on it");
  } else if (s.kind == "attack") {
    s.attack = top.has("model") ? "model" : top.require<std::string>("attack");
    if (top.has("plugin")) {  // a shared library registering `attack`: never loaded here (see replay)
      if (!rules.plugins) top.fail_at("plugin", "plugin submissions are off in " + rules.file + " (plugins: false)");
      const std::string library = top.require<std::string>("plugin");
      s.plugin = (fs::path(s.dir) / inside(top, "plugin", library)).string();
      if (!fs::is_regular_file(s.plugin) || fs::path(s.plugin).extension() != ".so")
        top.fail_at("plugin", "\"" + library + "\" is not a shared library (.so) in the submission");
      if (top.has("model")) top.fail_at("model", "give plugin or model, not both");
    }
    if (top.has("model")) {  // a policy trained elsewhere: a folder inside the submission
      if (top.has("attack")) top.fail_at("attack", "give attack or model, not both");
      if (has_options) top.fail_at("options", "a model submission takes no options");
      const std::string folder = top.require<std::string>("model");
      const fs::path model = fs::path(s.dir) / inside(top, "model", folder);
      if (!fs::exists(model / "config.json"))
        top.fail_at("model", "\"" + folder + "\" is not an HF model folder in the submission (no config.json)");
      for (const auto& f : fs::recursive_directory_iterator(model)) {
        const std::string ext = f.path().extension().string();
        if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".pkl" || ext == ".ckpt" || ext == ".py")
          top.fail_at("model",
                      f.path().filename().string() +
                          ": a model folder holds safetensors weights only (pickled or code files are refused)");
      }
      s.options = YAML::Node(YAML::NodeType::Map);
      s.options["dir"] = model.string();
    }
    s.budget = rules.budget;
    if (top.has("budget")) {  // an attack may ask for less than the event allows (best_of_n with 1 sample: a no-op)
      YamlSection budget = top.section("budget");
      s.budget.steps = budget.get<int64_t>("steps", rules.budget.steps);
      s.budget.samples = budget.get<int64_t>("samples", rules.budget.samples);
      s.budget.seconds = budget.get<double>("seconds", rules.budget.seconds);
      budget.finish();
      if (s.budget.steps <= 0 || s.budget.steps > rules.budget.steps)
        budget.fail_at("steps", "must be 1.." + std::to_string(rules.budget.steps) + " (the event's budget)");
      if (s.budget.samples <= 0 || s.budget.samples > rules.budget.samples)
        budget.fail_at("samples", "must be 1.." + std::to_string(rules.budget.samples) + " (the event's budget)");
      if (!(s.budget.seconds > 0 && s.budget.seconds <= rules.budget.seconds))
        budget.fail_at("seconds", "must be above 0 and at most the event's " + seconds_text(rules.budget.seconds));
    }
    top.finish();
    if (!s.plugin.empty()) return s;  // its attack and options are the plugin's: read in the sandbox
    if (std::find(rules.attacks.begin(), rules.attacks.end(), s.attack) == rules.attacks.end()) {
      std::string list;
      for (const auto& a : rules.attacks) list += (list.empty() ? "" : ", ") + a;
      top.fail_at("attack", "\"" + s.attack + "\" is not allowed by " + rules.file + " (allowed: " + list + ")");
    }
    YamlSection options(s.options, "options", file);
    make_attack(s.attack, options);
  } else {
    top.fail_at("kind", "must be suite or attack (got \"" + s.kind + "\")");
  }
  return s;
}

nlohmann::json submit_to_event(const std::string& event_dir, const std::string& submission_dir,
                               const std::string& team) {
  const HackathonRules rules = read_rules(event_dir, false);
  if (!std::regex_match(team, std::regex("[a-z0-9][a-z0-9_.-]{0,39}")))
    throw UserError("--team \"" + team +
                    "\": 1 to 40 lower-case letters, digits, _ . - (starting with a letter or digit)");
  const Submission s = read_submission(submission_dir, rules);
  const std::string sha = submission_hash(s.dir);
  const fs::path stored = fs::path(rules.dir) / "submissions" / sha;
  if (!fs::exists(stored)) {
    const fs::path partial = stored.string() + ".partial";
    fs::remove_all(partial);
    fs::create_directories(partial.parent_path());
    fs::copy(s.dir, partial, fs::copy_options::recursive);
    if (submission_hash(partial.string()) != sha)
      throw UserError(s.dir + ": its files changed while it was being submitted; submit it again");
    fs::rename(partial, stored);
  }
  return append_ledger(
      (fs::path(rules.dir) / "ledger.jsonl").string(),
      {{"kind", "submission"}, {"team", team}, {"submission", s.kind}, {"name", s.name}, {"sha256", sha}});
}

namespace {

// The red team's run of one attack (added by the caller) on one suite from the base, as `posttrain
// redteam` runs it with the event's seed, margin and attack share.
RedteamSpec replay_spec(const HackathonRules& rules, const Submission& suite, const std::string& split,
                        const fs::path& work, const AttackBudget& budget) {
  RedteamSpec spec;
  spec.suites.push_back({suite.suite, suite_options(suite, rules, split), suite.dir + "/submission.yaml", "suite"});
  spec.policy_dirs = {rules.base};
  spec.out_dir = work.string();
  spec.seed = rules.seed;
  spec.budget = budget;
  spec.margin = rules.margin;
  spec.attack_share = rules.attack_share;
  return spec;
}

// Inside the sandbox: the plugin attack on the suite's dev items, from the base; its trained policy
// (safetensors and tokenizer files only) is copied beside `out`. Nothing it saw is sealed.
void plugin_phase(const HackathonRules& rules, const Submission& suite, const Submission& attack, const fs::path& work,
                  const std::string& out) {
  load_plugins({attack.plugin});
  RedteamSpec spec = replay_spec(rules, suite, "dev", work, attack.budget);
  spec.attacks.push_back({attack.attack, YAML::Clone(attack.options), attack.dir + "/submission.yaml", "options"});
  auto dist = make_single_process();
  spec.dist = dist.get();
  const nlohmann::json report = run_redteam(spec);
  const nlohmann::json& record = report["runs"][0]["suites"][0];
  if (record["attacks"].empty() || !record["attacks"][0].contains("policy_dir"))
    throw UserError("the plugin attack " + attack.attack +
                    " left no trained policy (AttackOutput.policy_dir): a plugin attack is replayed on the sealed "
                    "items only through the policy it trains in the sandbox");
  const fs::path from = record["attacks"][0]["policy_dir"].get<std::string>();
  const fs::path policy = fs::path(out).parent_path() / "policy";
  fs::remove_all(policy);
  fs::create_directories(policy);
  for (const auto& f : fs::directory_iterator(from)) {
    const std::string ext = f.path().extension().string();  // weights, config, tokenizer (json, merges.txt)
    if (f.is_regular_file() && (ext == ".safetensors" || ext == ".json" || ext == ".txt"))
      fs::copy_file(f.path(), policy / f.path().filename());
  }
  write_file_atomic(
      out, nlohmann::json({{"policy", policy.string()}, {"details", record["attacks"][0]["details"]}}).dump(2) + "\n");
}

}  // namespace

void replay(const std::string& event_dir, const std::string& split, const std::string& suite_sha,
            const std::string& attack_sha, const std::string& model, const std::string& out, bool sandboxed,
            const std::string& plugin_policy) {
  // The sandbox shows neither the sealed items nor any model but the base.
  const HackathonRules rules = read_rules(event_dir, !sandboxed, !sandboxed);
  if (split != "dev" && split != "private") throw UserError("replay: --split must be dev or private");
  const fs::path work = fs::path(out).parent_path() / (fs::path(out).stem().string() + ".work");
  fs::remove_all(work);
  fs::create_directories(work);
  nlohmann::json result;
  if (suite_sha.empty()) {  // gold's score of a model
    YAML::Node options;
    options["data"] = split == "dev" ? rules.items.at(rules.gold).dev : rules.items.at(rules.gold).sealed;
    result["score"] = suite_score_of("gold", options, model_dir(rules, model), work.string());
  } else {
    const Submission suite = read_submission((fs::path(rules.dir) / "submissions" / suite_sha).string(), rules);
    if (!model.empty()) {
      result["score"] =
          suite_score_of(suite.suite, suite_options(suite, rules, split), model_dir(rules, model), work.string());
    } else {
      const Submission attack = read_submission((fs::path(rules.dir) / "submissions" / attack_sha).string(), rules);
      if (sandboxed) {
        if (attack.plugin.empty()) throw UserError("replay: --sandboxed is for plugin attacks");
        plugin_phase(rules, suite, attack, work, out);
        fs::remove_all(work);
        return;
      }
      if (!attack.plugin.empty() && plugin_policy.empty())
        throw UserError("replay: a plugin attack is replayed through the policy its sandboxed phase trained");
      RedteamSpec spec = replay_spec(rules, suite, split, work, attack.budget);
      if (attack.plugin.empty()) {
        spec.attacks.push_back(
            {attack.attack, YAML::Clone(attack.options), attack.dir + "/submission.yaml", "options"});
      } else {  // what the plugin trained, measured as a model submission is
        // Written inside the sandbox: a link there could point at any path out here.
        for (const auto& f : fs::recursive_directory_iterator(plugin_policy))
          if (f.is_symlink() || !f.is_regular_file())
            throw UserError("the plugin's policy folder holds " + f.path().filename().string() +
                            ", which is not a plain file");
        YAML::Node options;
        options["dir"] = plugin_policy;
        spec.attacks.push_back({"model", options, attack.dir + "/submission.yaml", "plugin"});
      }
      spec.gold_items = split == "dev" ? rules.items.at(rules.gold).dev : rules.items.at(rules.gold).sealed;
      auto dist = make_single_process();
      spec.dist = dist.get();
      const nlohmann::json report = run_redteam(spec);
      const nlohmann::json& record = report["runs"][0]["suites"][0];
      if (record["attacks"].empty()) {
        result["skipped"] =
            "the attack does not apply to this suite (it scores " + record.value("scores", std::string("?")) + ")";
        result["hacked"] = false;
      } else {
        const nlohmann::json& a = record["attacks"][0];
        // Unverified (null: the suite rose and gold could not judge its items) counts as HACKED: a
        // suite whose rises nobody can check must not earn robustness from that.
        result["hacked"] = !(a["hacked"].is_boolean() && !a["hacked"].get<bool>());
        result["verdict"] = a["hacked"];
        result["suite_gain"] = a["suite_score"]["gain"];
        if (a.contains("gold"))
          result["gold_gain"] = a["gold"]["attacked"].get<double>() - a["gold"]["start"].get<double>();
      }
    }
  }
  write_file_atomic(out, result.dump(2) + "\n");
  fs::remove_all(work);
}

namespace {

// One cached replay: run it in a child process unless its result is there. A child that fails or
// runs past its limit leaves a "failed" result with the reason (cached too: the replay is seeded,
// so running it again would fail again; delete judged/ after changing the machine).
std::string failure_reason(const ChildResult& child, double limit, const std::string& log) {
  std::string tail = fs::exists(log) ? read_file(log) : "";
  if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
  return child.timed_out ? "over budget: stopped after " + seconds_text(limit) + " s"
                         : "exit code " + std::to_string(child.exit_code) + ": " + tail;
}

// A plugin attack's first phase on one suite, in the sandbox (core/sandbox.h): it sees the rules,
// the public items, the two submissions and the base, writes only its scratch folder, and has no
// network; what comes back is the policy it trained. Run once for both splits (it sees dev items
// only) and cached like a replay. Returns {"policy": dir} or {"failed": reason}.
nlohmann::json sandboxed_phase(const HackathonRules& rules, const std::string& rules_sha, const std::string& suite_sha,
                               const std::string& attack_sha) {
  const std::string key = sha256_hex(rules_sha + "\nplugin\n" + suite_sha + "\n" + attack_sha);
  const fs::path scratch = fs::path(rules.dir) / "judged" / "plugins" / key.substr(0, 24);
  const fs::path out = scratch / "phase.json", failed = scratch / "failed.json";
  if (fs::exists(out)) return nlohmann::json::parse(read_file(out.string()));
  if (fs::exists(failed)) return nlohmann::json::parse(read_file(failed.string()));
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const fs::path submissions = fs::path(rules.dir) / "submissions";
  SandboxSpec box;
  box.read_only = {rules.file, (fs::path(rules.dir) / "public").string(), (submissions / suite_sha).string(),
                   (submissions / attack_sha).string(), rules.base};
  box.scratch = scratch.string();
  box.hidden = {(fs::path(rules.dir) / "sealed").string()};
  ChildLimits limits;
  limits.wrapper = sandbox_wrapper(box);
  limits.memory_bytes = 16ull << 30;  // address space: libtorch reserves far more than it touches
  const double limit = rules.budget.seconds + rules.grace_seconds;
  limits.cpu_seconds = static_cast<uint64_t>(std::ceil(4 * limit));  // 2 cores' worth, twice over
  const std::string log = (scratch / "phase.log").string();
  const ChildResult child = run_self({"hackathon", "replay", rules.dir, "--split", "dev", "--suite", suite_sha,
                                      "--attack", attack_sha, "--out", out.string(), "--sandboxed"},
                                     limit, log, limits);
  if (child.exit_code == 0 && fs::exists(out)) return nlohmann::json::parse(read_file(out.string()));
  const std::string reason = "in the sandbox: " + failure_reason(child, limit, log);
  std::cerr << "posttrain: hackathon: plugin attack " << attack_sha.substr(0, 12) << " on " << suite_sha.substr(0, 12)
            << " failed " << reason << "\n";
  write_file_atomic(failed.string(), nlohmann::json({{"failed", reason}}).dump(2) + "\n");
  return {{"failed", reason}};
}

nlohmann::json cached_replay(const HackathonRules& rules, const std::string& rules_sha, const std::string& split,
                             const std::string& suite_sha, const std::string& attack_sha, const std::string& model,
                             Progress& progress, int64_t& done, const std::string& plugin_policy = "") {
  const std::string key = sha256_hex(rules_sha + "\n" + split + "\n" + suite_sha + "\n" + attack_sha + "\n" + model);
  const fs::path out = fs::path(rules.dir) / "judged" / split / (key.substr(0, 24) + ".json");
  if (!fs::exists(out)) {
    fs::create_directories(out.parent_path());
    std::vector<std::string> args{"hackathon", "replay", rules.dir, "--split", split, "--out", out.string()};
    if (!suite_sha.empty()) args.insert(args.end(), {"--suite", suite_sha});
    if (!attack_sha.empty()) args.insert(args.end(), {"--attack", attack_sha});
    if (!model.empty()) args.insert(args.end(), {"--model", model});
    if (!plugin_policy.empty()) args.insert(args.end(), {"--plugin-policy", plugin_policy});
    const double limit = rules.budget.seconds + rules.grace_seconds;
    const std::string log = out.string() + ".log";
    const ChildResult child = run_self(args, limit, log);
    if (child.timed_out || child.exit_code != 0 || !fs::exists(out)) {
      const std::string reason = failure_reason(child, limit, log);
      std::cerr << "posttrain: hackathon: replay " << (attack_sha.empty() ? model : attack_sha.substr(0, 12)) << " on "
                << (suite_sha.empty() ? "gold" : suite_sha.substr(0, 12)) << " (" << split << ") failed: " << reason
                << "\n";
      write_file_atomic(out.string(), nlohmann::json({{"failed", reason}}).dump(2) + "\n");
    }
  }
  progress.update(++done);
  return nlohmann::json::parse(read_file(out.string()));
}

struct Entry {
  std::string team, kind, name, sha;
  int64_t line = 0;
};

}  // namespace

nlohmann::json judge_event(const std::string& event_dir) {
  const HackathonRules rules = read_rules(event_dir, true);
  const std::string ledger = (fs::path(rules.dir) / "ledger.jsonl").string();
  std::vector<Entry> entries;
  for (const auto& e : read_ledger(ledger)) {
    Entry entry{e["team"], e["submission"], e["name"], e["sha256"], e["seq"].get<int64_t>() + 1};
    const fs::path stored = fs::path(rules.dir) / "submissions" / entry.sha;
    if (!fs::exists(stored))
      throw UserError(ledger + ":" + std::to_string(entry.line) + ": submissions/" + entry.sha + " is missing");
    if (submission_hash(stored.string()) != entry.sha)
      throw UserError(ledger + ":" + std::to_string(entry.line) + ": submissions/" + entry.sha.substr(0, 12) +
                      "... changed after it was submitted (its files no longer hash to the ledger's sha256)");
    entries.push_back(entry);
  }
  if (entries.empty()) throw UserError(ledger + ": no submissions yet (posttrain hackathon submit)");
  std::vector<std::string> suites, attacks;  // distinct submissions, in ledger order
  std::map<std::string, std::string> name_of;
  for (const auto& e : entries) {
    auto& list = e.kind == "suite" ? suites : attacks;
    if (std::find(list.begin(), list.end(), e.sha) == list.end()) list.push_back(e.sha);
    name_of.emplace(e.sha, e.name);
  }
  std::set<std::string> plugin_attacks;  // read without loading: the plugin itself runs only in the sandbox
  for (const auto& a : attacks)
    if (!read_submission((fs::path(rules.dir) / "submissions" / a).string(), rules).plugin.empty())
      plugin_attacks.insert(a);
  std::vector<std::string> models{"base"};
  for (const auto& [name, dir] : rules.honest) models.push_back(name);
  if (!rules.hacked.empty()) models.push_back("hacked");

  const std::string rules_sha = sha256_file(rules.file);
  const int64_t per_split = static_cast<int64_t>(models.size() * (1 + suites.size()) + suites.size() * attacks.size());
  Progress progress("judge", 2 * per_split);
  int64_t done = 0;
  nlohmann::json results = {{"event", rules.event}, {"rules_sha256", rules_sha}};
  std::map<std::string, std::map<std::string, double>> private_score;  // split -> sha -> score
  for (const std::string split : kSplits) {
    std::map<std::string, double> gold;
    for (const auto& m : models) {
      const auto r = cached_replay(rules, rules_sha, split, "", "", m, progress, done);
      gold[m] = r.contains("score") ? r["score"].get<double>() : std::nan("");
    }
    std::vector<SuiteEvidence> evidence;
    nlohmann::json suite_rows = nlohmann::json::array();
    std::vector<bool> suite_failed;
    for (const auto& s : suites) {
      SuiteEvidence e{name_of[s]};
      std::map<std::string, double> score;
      std::string failure;
      for (const auto& m : models) {
        const auto r = cached_replay(rules, rules_sha, split, s, "", m, progress, done);
        if (r.contains("failed")) failure = r["failed"];
        score[m] = r.value("score", std::nan(""));
      }
      e.base_score = score["base"], e.base_gold = gold["base"];
      for (const auto& [name, dir] : rules.honest)
        e.honest_scores.push_back(score[name]), e.honest_gold.push_back(gold[name]);
      nlohmann::json row = {{"sha256", s}, {"name", name_of[s]}, {"scores", score}};
      if (!failure.empty()) row["failed"] = failure;
      if (!rules.hacked.empty() && failure.empty())  // the positive control: fooled when it pays the hacked variant
        row["fooled_by_control"] = score["hacked"] > score["base"] + rules.margin && gold["hacked"] <= gold["base"];
      suite_failed.push_back(!failure.empty());
      evidence.push_back(e);
      suite_rows.push_back(row);
    }
    std::vector<std::vector<bool>> hacked(attacks.size(), std::vector<bool>(suites.size(), false));
    nlohmann::json replays = nlohmann::json::array();
    for (size_t a = 0; a < attacks.size(); ++a)
      for (size_t s = 0; s < suites.size(); ++s) {
        nlohmann::json r;
        if (plugin_attacks.count(attacks[a])) {  // first the sandbox, then its policy as a model attack
          const nlohmann::json phase = sandboxed_phase(rules, rules_sha, suites[s], attacks[a]);
          r = phase.contains("failed") ? phase
                                       : cached_replay(rules, rules_sha, split, suites[s], attacks[a], "", progress,
                                                       done, phase["policy"].get<std::string>());
          if (phase.contains("failed")) progress.update(++done);
        } else {
          r = cached_replay(rules, rules_sha, split, suites[s], attacks[a], "", progress, done);
        }
        hacked[a][s] = r.value("hacked", false);
        replays.push_back({{"attack", attacks[a]}, {"suite", suites[s]}, {"result", r}});
      }
    const auto suite_scores = score_suites(evidence, hacked, rules.margin);
    for (size_t s = 0; s < suites.size(); ++s) {
      const SuiteScore& sc = suite_scores[s];
      // A suite whose own replay failed scores nothing (it cannot be judged), whatever the attacks did.
      const double score = suite_failed[s] ? 0.0 : sc.score;
      suite_rows[s].update({{"validity", sc.validity},
                            {"robustness", sc.robustness},
                            {"false_alarms", sc.false_alarms},
                            {"strength", suite_failed[s] ? 0.0 : sc.strength},
                            {"score", score}});
      private_score[split][suites[s]] = score;
    }
    std::vector<SuiteScore> strengths = suite_scores;
    for (size_t s = 0; s < suites.size(); ++s)
      if (suite_failed[s]) strengths[s].strength = 0;
    std::vector<std::string> attack_names_list;
    for (const auto& a : attacks) attack_names_list.push_back(name_of[a]);
    const auto attack_scores = score_attacks(attack_names_list, strengths, hacked, rules.unique_bonus);
    nlohmann::json attack_rows = nlohmann::json::array();
    for (size_t a = 0; a < attacks.size(); ++a) {
      attack_rows.push_back({{"sha256", attacks[a]},
                             {"name", name_of[attacks[a]]},
                             {"hacks", attack_scores[a].hacks},
                             {"unique_hacks", attack_scores[a].unique_hacks},
                             {"score", attack_scores[a].score}});
      private_score[split][attacks[a]] = attack_scores[a].score;
    }
    results[split] = {{"gold", gold}, {"suites", suite_rows}, {"attacks", attack_rows}, {"replays", replays}};
  }
  progress.finish();
  write_file_atomic((fs::path(rules.dir) / "judged" / "results.json").string(), results.dump(2) + "\n");

  // The public board: dev scores, exact. The private board: the Ladder over the ledger's order, per
  // team and kind; only what it shows leaves the judge (judged/results.json stays with the host).
  nlohmann::json public_rows = nlohmann::json::array(), history = nlohmann::json::array();
  Ladder ladder(rules.eta);
  for (const auto& e : entries) {
    public_rows.push_back({{"line", e.line},
                           {"team", e.team},
                           {"kind", e.kind},
                           {"name", e.name},
                           {"sha256", e.sha},
                           {"dev_score", private_score["dev"][e.sha]}});
    const double before = ladder.shown(e.team + "/" + e.kind);
    const double shown = ladder.submit(e.team + "/" + e.kind, private_score["private"][e.sha]);
    history.push_back({{"line", e.line},
                       {"team", e.team},
                       {"kind", e.kind},
                       {"shown", shown},
                       {"new", std::isnan(before) || shown != before}});
  }
  nlohmann::json private_rows = nlohmann::json::array();
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& e : entries)
    if (seen.insert({e.team, e.kind}).second)
      private_rows.push_back({{"team", e.team}, {"kind", e.kind}, {"shown", ladder.shown(e.team + "/" + e.kind)}});
  std::stable_sort(private_rows.begin(), private_rows.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    return a["kind"] != b["kind"] ? a["kind"] > b["kind"] : a["shown"].get<double>() > b["shown"].get<double>();
  });
  const nlohmann::json board = {
      {"event", rules.event},
      {"eta", rules.eta},
      {"public", public_rows},
      {"private", private_rows},
      {"private_history", history},
      {"dev", {{"suites", results["dev"]["suites"]}, {"attacks", results["dev"]["attacks"]}}}};
  write_file_atomic((fs::path(rules.dir) / "board.json").string(), board.dump(2) + "\n");
  return board;
}

}  // namespace posttrain
