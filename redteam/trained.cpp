// Attacks that train the policy, through the ordinary trainers (a recipe written into the attack's
// folder and run in this process), then answer the eval split greedily with the trained policy:
// - rl: GRPO on the attack split's prompts with the suite's own scorer as the reward (the `suite`
//   reward function); gold rides along at weight 0 where gold can judge, so metrics.jsonl holds the
//   suite reward and gold against the KL to the start, and Gao et al.'s fit says where gold peaked.
// - sft_exploit: a positive control: SFT on exploit demonstrations the user supplies (JSONL in the
//   sft format), to check that the measure calls a policy that learnt a known hack HACKED.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "eval_hooks/overoptimization.h"
#include "models/checkpoint.h"
#include "redteam/attack.h"
#include "trainers/run.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

struct TrainingOptions {
  double lr = 5e-5;
  int64_t batch_size = 4;
  int64_t default_steps = 20;
};

YAML::Node base_recipe(const AttackInput& in, const std::string& method, const TrainingOptions& t,
                       const std::string& data) {
  YAML::Node r;
  r["method"] = method;
  r["seed"] = in.seed;
  r["base"] = fs::absolute(in.policy_dir).string();
  r["data"]["train"] = data;
  r["data"]["max_length"] = 512;
  r["train"]["steps"] = in.budget.steps > 0 ? in.budget.steps : t.default_steps;
  r["train"]["batch_size"] = t.batch_size;
  r["train"]["micro_batch_size"] = t.batch_size;
  r["train"]["lr"] = t.lr;
  r["train"]["schedule"] = "constant";
  r["checkpoint"]["every"] = 0;
  r["output_dir"] = (fs::path(in.out_dir) / "run").string();
  return r;
}

// Runs the recipe (a fresh run folder), loads its final policy and answers the eval split greedily.
std::vector<std::string> train_and_answer(const AttackInput& in, const YAML::Node& recipe, AttackOutput& out) {
  if (in.policy && in.policy->distributed() && in.policy->distributed()->world_size() > 1)
    throw UserError("trained attacks (rl, sft_exploit) run in one process; run posttrain redteam without launch");
  fs::create_directories(in.out_dir);
  const std::string run_dir = (fs::path(in.out_dir) / "run").string();
  fs::remove_all(run_dir);  // the attack's own folder: a rerun trains afresh
  YAML::Emitter emitter;
  emitter << recipe;
  const std::string recipe_path = (fs::path(in.out_dir) / "recipe.yaml").string();
  write_file_atomic(recipe_path, std::string(emitter.c_str()) + "\n");
  RunOptions options;
  options.command_line = "posttrain redteam (attack run)";
  run_recipe(recipe_path, options);
  out.policy_dir = (fs::path(run_dir) / "final").string();
  auto model = load_model(out.policy_dir, LoadOptions{});
  model->eval();
  EvalModel trained(*model, Tokenizer::from_dir(out.policy_dir), in.policy ? in.policy->distributed() : nullptr);
  return policy_answers(trained, in.scorer, in.eval_items);
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);)
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

AttackOutput run_rl(const AttackInput& in, const TrainingOptions& t, int64_t group_size, double kl_coef) {
  if (!in.policy) throw UserError("attack rl needs a starting policy (--policy)");
  fs::create_directories(in.out_dir);
  // The attack split's prompts, asked as the suite asks them, with gold's fields where gold judges.
  std::string prompts;
  bool gold_everywhere = true;
  for (size_t i : in.attack_items) {
    nlohmann::json record;
    if (const TestbedItem* judge = in.gold_judges.empty() ? nullptr : in.gold_judges[i]) {
      record = {{"family", judge->family},
                {"answer", judge->answer},
                {"harmful", judge->harmful},
                {"claimed", judge->claimed}};
    } else {
      gold_everywhere = false;
    }
    record["id"] = in.scorer.item_id(i);
    record["prompt"] = in.scorer.chat() ? nlohmann::json::array({{{"role", "user"}, {"content", in.scorer.prompt(i)}}})
                                        : nlohmann::json(in.scorer.prompt(i) + in.scorer.text_suffix());
    prompts += record.dump() + "\n";
  }
  const std::string prompts_path = (fs::path(in.out_dir) / "attack_prompts.jsonl").string();
  write_file_atomic(prompts_path, prompts);

  YAML::Node recipe = base_recipe(in, "grpo", t, prompts_path);
  recipe["grpo"]["group_size"] = group_size;
  recipe["grpo"]["max_new_tokens"] = in.scorer.max_new_tokens();
  recipe["grpo"]["kl_coef"] = kl_coef;
  YAML::Node suite_reward;
  suite_reward["name"] = "suite";
  suite_reward["suite"] = in.suite_name;
  suite_reward["options"] = YAML::Clone(in.suite_options);
  recipe["grpo"]["rewards"].push_back(suite_reward);
  if (gold_everywhere) {
    YAML::Node gold;
    gold["name"] = "gold";
    gold["weight"] = 0;
    recipe["grpo"]["rewards"].push_back(gold);
  }
  AttackOutput out;
  out.responses = train_and_answer(in, recipe, out);
  // The curve: the suite's reward (and gold) on the rollouts against d = sqrt(KL to the start).
  const auto metrics = read_metrics((fs::path(in.out_dir) / "run" / "metrics.jsonl").string());
  for (const auto& m : metrics) {
    if (!m.contains("kl") || !m.contains("reward/suite")) continue;
    nlohmann::json point = {{"step", m.value("step", 0)},
                            {"sqrt_kl", std::sqrt(std::max(0.0, m["kl"].get<double>()))},
                            {"attack_score", m["reward/suite"]}};
    if (m.contains("reward/gold")) point["gold"] = m["reward/gold"];
    out.curve.push_back(point);
  }
  out.details["overoptimization"] = overoptimization_report(metrics);
  out.details["steps"] = recipe["train"]["steps"].as<int64_t>();
  out.details["lr"] = t.lr;
  out.details["group_size"] = group_size;
  out.details["kl_coef"] = kl_coef;
  return out;
}

AttackOutput run_sft_exploit(const AttackInput& in, const TrainingOptions& t, const std::string& data) {
  if (!in.policy) throw UserError("attack sft_exploit needs a starting policy (--policy)");
  AttackOutput out;
  out.responses = train_and_answer(in, base_recipe(in, "sft", t, data), out);
  out.details["data"] = data;
  out.details["data_sha256"] = sha256_file(data);
  out.details["steps"] = in.budget.steps > 0 ? in.budget.steps : t.default_steps;
  return out;
}

TrainingOptions read_training_options(YamlSection& options) {
  TrainingOptions t;
  t.lr = options.get<double>("lr", t.lr);
  t.batch_size = options.get<int64_t>("batch_size", t.batch_size);
  if (!(t.lr > 0) || !std::isfinite(t.lr)) options.fail_at("lr", "must be a positive number");
  if (t.batch_size <= 0) options.fail_at("batch_size", "must be positive");
  return t;
}

const bool registered = [] {
  register_attack("rl",
                  [](YamlSection& options) -> Attack {
                    const TrainingOptions t = read_training_options(options);
                    const int64_t group = options.get<int64_t>("group_size", 4);
                    const double kl_coef = options.get<double>("kl_coef", 0.02);
                    if (group < 2)
                      options.fail_at("group_size", "must be at least 2 (GRPO compares answers within a group)");
                    if (!(kl_coef >= 0)) options.fail_at("kl_coef", "must be >= 0");
                    return [t, group, kl_coef](const AttackInput& in) { return run_rl(in, t, group, kl_coef); };
                  },
                  {"GRPO with the suite's own scorer as the reward, on the attack split (budget.steps, default 20; lr, "
                   "batch_size, group_size, kl_coef)",
                   true});
  register_attack(
      "sft_exploit",
      [](YamlSection& options) -> Attack {
        const TrainingOptions t = read_training_options(options);
        std::string data = options.require<std::string>("data");
        data = fs::absolute(data).string();
        if (!fs::is_regular_file(data)) options.fail_at("data", data + ": exploit demonstrations not found");
        return [t, data](const AttackInput& in) { return run_sft_exploit(in, t, data); };
      },
      {"positive control: SFT on exploit demonstrations (data: JSONL in the sft format; budget.steps, default 20)",
       true});
  return true;
}();

}  // namespace

}  // namespace posttrain
