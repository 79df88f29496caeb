// Attacks that train the policy, through the ordinary trainers (a recipe written into the attack's
// folder and run in this process), then answer the eval split greedily with the trained policy:
// - rl: GRPO on the attack split's prompts with the suite's own scorer as the reward (the `suite`
//   reward function); gold rides along at weight 0 where gold can judge, so metrics.jsonl holds the
//   suite reward and gold against the KL to the start, and Gao et al.'s fit says where gold peaked.
// - sft_exploit: a positive control: SFT on exploit demonstrations the user supplies (JSONL in the
//   sft format), to check that the measure calls a policy that learnt a known hack HACKED.
// - choice_dpo: the optimiser for suites that score log-likelihoods (mc, truthfulqa_mc, sycophancy),
//   which give no response to reward: DPO on pairs built on the attack split, the item asked as the
//   suite asks it, chosen = the continuation `pairs` picks, rejected = each other one. `pairs:
//   scorer` takes the one the scorer credits (teaching to the test: does the gain reach gold?);
//   longest / shortest / first / last take a surface feature of the options and never read the
//   credit; `auto` takes the feature that agrees with the credit most often on the attack split,
//   which is how an artefact (the right option is the longest one) gets found and exploited.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

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

YAML::Node base_recipe(const std::string& policy_dir, uint64_t seed, const AttackBudget& budget,
                       const std::string& out_dir, const std::string& method, const TrainingOptions& t,
                       const std::string& data) {
  YAML::Node r;
  r["method"] = method;
  r["seed"] = seed;
  r["base"] = fs::absolute(policy_dir).string();
  r["data"]["train"] = data;
  r["data"]["max_length"] = 512;
  r["train"]["steps"] = budget.steps > 0 ? budget.steps : t.default_steps;
  r["train"]["batch_size"] = t.batch_size;
  r["train"]["micro_batch_size"] = t.batch_size;
  r["train"]["lr"] = t.lr;
  r["train"]["schedule"] = "constant";
  r["checkpoint"]["every"] = 0;
  r["output_dir"] = (fs::path(out_dir) / "run").string();
  return r;
}

YAML::Node base_recipe(const AttackInput& in, const std::string& method, const TrainingOptions& t,
                       const std::string& data) {
  return base_recipe(in.policy_dir, in.seed, in.budget, in.out_dir, method, t, data);
}

// Writes the recipe into the attack's folder and runs it there afresh; returns the trained final/.
std::string train(const std::string& out_dir, const YAML::Node& recipe) {
  fs::create_directories(out_dir);
  const std::string run_dir = (fs::path(out_dir) / "run").string();
  fs::remove_all(run_dir);  // the attack's own folder: a rerun trains afresh
  YAML::Emitter emitter;
  emitter << recipe;
  const std::string recipe_path = (fs::path(out_dir) / "recipe.yaml").string();
  write_file_atomic(recipe_path, std::string(emitter.c_str()) + "\n");
  RunOptions options;
  options.command_line = "posttrain redteam (attack run)";
  run_recipe(recipe_path, options);
  return (fs::path(run_dir) / "final").string();
}

// Runs the recipe, loads its final policy and answers the eval split greedily.
std::vector<std::string> train_and_answer(const AttackInput& in, const YAML::Node& recipe, AttackOutput& out) {
  if (in.policy && in.policy->distributed() && in.policy->distributed()->world_size() > 1)
    throw UserError("trained attacks (rl, sft_exploit) run in one process; run posttrain redteam without launch");
  out.policy_dir = train(in.out_dir, recipe);
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

const std::vector<std::string> kChoiceFeatures = {"longest", "shortest", "first", "last"};

// The option a surface feature picks: the first or last displayed, or the one with the longest or
// shortest text; none when the longest (shortest) is not unique, so a tie is no signal.
std::optional<size_t> pick_by_feature(const std::string& feature, const std::vector<std::string>& texts) {
  if (feature == "first") return 0;
  if (feature == "last") return texts.size() - 1;
  size_t pick = 0;
  bool unique = true;
  for (size_t k = 1; k < texts.size(); ++k) {
    const bool better =
        feature == "longest" ? texts[k].size() > texts[pick].size() : texts[k].size() < texts[pick].size();
    if (better)
      pick = k, unique = true;
    else if (texts[k].size() == texts[pick].size())
      unique = false;
  }
  return unique ? std::optional<size_t>(pick) : std::nullopt;
}

ChoiceAttackOutput run_choice_dpo(const ChoiceAttackInput& in, const TrainingOptions& t, const std::string& pairs,
                                  double beta) {
  ChoiceAttackOutput out;
  std::string feature = pairs;
  // How often each feature picks the credited continuation on the attack split (public items).
  nlohmann::json agreement = nlohmann::json::object();
  for (const auto& f : kChoiceFeatures) {
    double hits = 0;
    for (size_t i : in.attack_items) hits += pick_by_feature(f, in.scorer.option_texts(i)) == in.scorer.credited(i);
    agreement[f] = hits / static_cast<double>(in.attack_items.size());
    if (pairs == "auto" && (feature == "auto" || agreement[f].get<double>() > agreement[feature].get<double>()))
      feature = f;
  }
  std::string data;
  int64_t count = 0;
  for (size_t i : in.attack_items) {
    const auto options = in.scorer.continuations(i);
    const std::optional<size_t> pick =
        feature == "scorer" ? in.scorer.credited(i) : pick_by_feature(feature, in.scorer.option_texts(i));
    if (!pick) continue;  // the feature does not single out an option here
    const size_t chosen = *pick;
    const auto as_answer = [&](const std::string& text) {  // a chat answer has no leading space
      return in.scorer.chat() && !text.empty() && text[0] == ' ' ? text.substr(1) : text;
    };
    const nlohmann::json prompt = in.scorer.chat()
                                      ? nlohmann::json::array({{{"role", "user"}, {"content", in.scorer.context(i)}}})
                                      : nlohmann::json(in.scorer.context(i));
    for (size_t k = 0; k < options.size(); ++k) {
      if (k == chosen || options[k] == options[chosen]) continue;
      data +=
          nlohmann::json{
              {"prompt", prompt}, {"chosen", as_answer(options[chosen])}, {"rejected", as_answer(options[k])}}
              .dump() +
          "\n";
      ++count;
    }
  }
  if (count == 0) throw UserError("attack choice_dpo: the attack split's items have no two different options");
  fs::create_directories(in.out_dir);
  const std::string pairs_path = (fs::path(in.out_dir) / "attack_pairs.jsonl").string();
  write_file_atomic(pairs_path, data);
  YAML::Node recipe = base_recipe(in.policy_dir, in.seed, in.budget, in.out_dir, "dpo", t, pairs_path);
  recipe["dpo"]["beta"] = beta;
  out.policy_dir = train(in.out_dir, recipe);
  out.details = {{"pairs", feature},
                 {"pair_count", count},
                 {"feature_agreement", agreement},
                 {"beta", beta},
                 {"steps", recipe["train"]["steps"].as<int64_t>()},
                 {"lr", t.lr}};
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
  register_choice_attack(
      "choice_dpo",
      [](YamlSection& options) -> ChoiceAttack {
        const TrainingOptions t = read_training_options(options);
        const std::string pairs = options.get<std::string>("pairs", "scorer");
        const double beta = options.get<double>("beta", 0.1);
        if (pairs != "scorer" && pairs != "auto" &&
            std::find(kChoiceFeatures.begin(), kChoiceFeatures.end(), pairs) == kChoiceFeatures.end())
          options.fail_at("pairs", "must be scorer, auto, longest, shortest, first or last");
        if (!(beta > 0) || !std::isfinite(beta)) options.fail_at("beta", "must be a positive number");
        return [t, pairs, beta](const ChoiceAttackInput& in) { return run_choice_dpo(in, t, pairs, beta); };
      },
      {"for log-likelihood suites (mc, truthfulqa_mc, sycophancy): DPO toward the option the scorer credits, or a "
       "surface feature of the options (pairs: scorer|auto|longest|shortest|first|last; beta, lr, batch_size; "
       "budget.steps, default 20)",
       true});
  return true;
}();

}  // namespace

}  // namespace posttrain
