#include "redteam/matrix.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/recipe.h"
#include "core/variants.h"
#include "core/yaml_reader.h"
#include "models/lora.h"

namespace fs = std::filesystem;

namespace posttrain {

MatrixRedteam read_matrix_redteam(const Matrix& matrix) {
  MatrixRedteam plan;
  if (!matrix.redteam || matrix.redteam.IsNull()) return plan;
  YamlSection section(matrix.redteam, "redteam", matrix.file);
  plan.on = section.get<std::string>("on", "base");
  if (plan.on != "base" && plan.on != "variants" && plan.on != "all")
    section.fail_at("on", "must be base, variants or all");
  RedteamSpec& spec = plan.spec;
  spec.out_dir = (fs::path(matrix.output_dir) / "redteam").string();
  spec.budget.steps = section.get<int64_t>("steps", 0);
  spec.budget.samples = section.get<int64_t>("samples", 0);
  spec.budget.seconds = section.get<double>("seconds", 0);
  if (spec.budget.steps < 0 || spec.budget.samples < 0 || !(spec.budget.seconds >= 0))
    section.fail_at("steps", "budgets must be >= 0 (0: the attack's default)");
  spec.seed = section.get<uint64_t>("seed", 0);
  spec.margin = section.get<double>("margin", spec.margin);
  spec.gold_items = section.get<std::string>("gold_items", "");
  if (!spec.gold_items.empty()) spec.gold_items = resolve_recipe_path(matrix.file, spec.gold_items);
  const YAML::Node attacks = section.raw("attacks");
  if (!attacks || !attacks.IsSequence() || attacks.size() == 0)
    section.fail_at("attacks", "must be a non-empty list of attack names or {name, options...}");
  bool on_responses = false, on_choices = false;  // which kinds of suite the attacks given can attack
  for (size_t i = 0; i < attacks.size(); ++i) {
    RedteamEntry entry;
    entry.file = matrix.file;
    entry.path = "redteam.attacks[" + std::to_string(i) + "]";
    YAML::Node options(YAML::NodeType::Map);
    if (attacks[i].IsScalar()) {
      entry.name = attacks[i].as<std::string>();
    } else if (attacks[i].IsMap() && attacks[i]["name"]) {
      entry.name = attacks[i]["name"].as<std::string>();
      for (const auto& kv : attacks[i])
        if (kv.first.as<std::string>() != "name") options[kv.first.as<std::string>()] = YAML::Clone(kv.second);
    } else {
      fail(matrix.file + ": " + entry.path, "must be an attack name or {name, options...}");
    }
    entry.options = options;
    YamlSection check(YAML::Clone(options), entry.path, entry.file);
    try {
      make_attack(entry.name, check);  // validates the name and options now, before any variant trains
    } catch (const UserError& e) {
      throw UserError(matrix.file + ": " + entry.path + ": " + e.what());
    }
    (find_attack_info(entry.name)->on_choices ? on_choices : on_responses) = true;
    spec.attacks.push_back(entry);
  }
  section.finish();
  // The suites: the matrix's evals entries whose suite scores each response, with their own options.
  if (matrix.evals && matrix.evals.IsSequence())
    for (size_t i = 0; i < matrix.evals.size(); ++i) {
      const YAML::Node e = matrix.evals[i];
      if (!e.IsMap() || !e["suite"]) continue;
      RedteamEntry entry;
      entry.name = e["suite"].as<std::string>();
      entry.file = matrix.file;
      entry.path = "evals[" + std::to_string(i) + "]";
      YAML::Node options(YAML::NodeType::Map);
      for (const auto& kv : e) {
        const std::string key = kv.first.as<std::string>();
        if (key != "suite" && key != "after_run" && key != "every_n_steps" && key != "on_checkpoint")
          options[key] = YAML::Clone(kv.second);
      }
      entry.options = options;
      const auto suite = make_suite(entry.name, options, entry.file, entry.path);
      if (suite->response_scorer() ? !on_responses : !suite->choice_scorer() || !on_choices) {
        plan.skipped.push_back(entry.name + (suite->response_scorer() ? ": scores responses; no attack given does"
                                             : suite->choice_scorer()
                                                 ? ": scores log-likelihoods; add choice_dpo to attack it"
                                                 : ": its scorer is a model"));
        continue;
      }
      spec.suites.push_back(entry);
    }
  if (spec.suites.empty()) section.fail_at("attacks", "none of the matrix's evals can be attacked by these attacks");
  return plan;
}

nlohmann::json run_matrix_redteam(MatrixRedteam plan, const std::vector<std::string>& run_dirs) {
  if (run_dirs.empty()) throw UserError("redteam: no variant has run yet");
  if (plan.on != "variants") {
    const auto manifest = nlohmann::json::parse(read_file((fs::path(run_dirs[0]) / "manifest.json").string()));
    plan.spec.policy_dirs.push_back(manifest["base"].value("path", ""));
  }
  std::set<std::string> attacked_variants;
  if (plan.on != "base")
    for (const auto& dir : run_dirs) {
      // Of a variant's seed replicates, the first is attacked: the replicates share the method, and
      // a red team per seed would multiply the cost by the seeds for the same question.
      const std::string run = run_name_of(dir);
      if (!attacked_variants.insert(run.substr(0, run.find('/'))).second) continue;
      const fs::path final_dir = fs::path(dir) / "final";
      const fs::path config = final_dir / "config.json";
      const bool adapter = is_adapter_dir(final_dir.string());  // a LoRA run's final model
      if (!adapter && !fs::exists(config)) continue;
      // A reward model (a sequence classifier) writes no answers: nothing to attack.
      if (adapter ? read_adapter_config(final_dir.string()).classifier
                  : read_file(config.string()).find("ForSequenceClassification") != std::string::npos)
        continue;
      plan.spec.policy_dirs.push_back((fs::path(dir) / "final").string());
    }
  return run_redteam(plan.spec);
}

}  // namespace posttrain
