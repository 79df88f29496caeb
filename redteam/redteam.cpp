#include "redteam/redteam.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"
#include "core/rng.h"
#include "datasets/sft_data.h"
#include "datasets/testbed.h"
#include "models/checkpoint.h"
#include "redteam/measure.h"

namespace fs = std::filesystem;

namespace posttrain {

std::pair<std::vector<size_t>, std::vector<size_t>> split_items(const ResponseScorer& scorer, uint64_t seed,
                                                                double attack_share) {
  std::map<std::string, std::vector<size_t>> by_id;
  for (size_t i = 0; i < scorer.size(); ++i) by_id[scorer.item_id(i)].push_back(i);
  if (by_id.size() < 2) throw UserError("a suite needs items with at least two distinct ids to split for an attack");
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [id, rows] : by_id) order.emplace_back(fnv1a64(std::to_string(seed) + ":" + id), id);
  std::sort(order.begin(), order.end());
  const auto ids = static_cast<double>(order.size());
  const size_t in_attack = std::clamp<size_t>(static_cast<size_t>(std::ceil(attack_share * ids)), 1, order.size() - 1);
  std::vector<size_t> attack, eval;
  for (size_t k = 0; k < order.size(); ++k)
    for (size_t i : by_id[order[k].second]) (k < in_attack ? attack : eval).push_back(i);
  std::sort(attack.begin(), attack.end());
  std::sort(eval.begin(), eval.end());
  return {attack, eval};
}

std::string suite_version(const std::string& name, const YAML::Node& options, const ResponseScorer& scorer) {
  YAML::Emitter emitter;
  emitter << options;
  std::string text = name + "\n" + emitter.c_str() + "\n";
  for (size_t i = 0; i < scorer.size(); ++i) text += scorer.item_id(i) + "\t" + scorer.prompt(i) + "\n";
  return sha256_hex(text);
}

namespace {

// A policy's answers can hold bytes that are not UTF-8 (a sampled token cut mid-character); they are
// scored as they are and written with U+FFFD in their place.
constexpr auto kReplaceInvalid = nlohmann::json::error_handler_t::replace;

// Gold's judge for each item: the suite's own testbed item, else the record in `gold_items` with the
// same prompt, else none.
std::vector<const TestbedItem*> gold_judges(const ResponseScorer& scorer, const std::vector<TestbedItem>& gold_items) {
  std::map<std::string, const TestbedItem*> by_prompt;
  for (const auto& item : gold_items) by_prompt[item.prompt] = &item;
  std::vector<const TestbedItem*> judges;
  for (size_t i = 0; i < scorer.size(); ++i) {
    const TestbedItem* judge = scorer.testbed_item(i);
    if (!judge) {
      const auto it = by_prompt.find(scorer.prompt(i));
      judge = it == by_prompt.end() ? nullptr : it->second;
    }
    judges.push_back(judge);
  }
  return judges;
}

struct PreparedSuite {
  RedteamEntry entry;
  std::unique_ptr<EvalSuite> suite;
  const ResponseScorer* scorer = nullptr;
};

struct PreparedAttack {
  RedteamEntry entry;
  Attack attack;
  AttackInfo info;
};

}  // namespace

nlohmann::json run_redteam(const RedteamSpec& spec) {
  if (spec.suites.empty()) throw UserError("redteam: no suite given (--suite)");
  if (spec.attacks.empty()) throw UserError("redteam: no attack given (--attack)");
  if (!(spec.margin >= 0)) throw UserError("redteam: --margin must be >= 0");
  if (!(spec.attack_share > 0 && spec.attack_share < 1)) throw UserError("redteam: --attack-share must be in (0, 1)");
  if (spec.budget.steps < 0 || spec.budget.samples < 0 || spec.budget.seconds < 0)
    throw UserError("redteam: a budget must be positive (0 = the attack's default)");

  // Everything is validated before any model is loaded or any attack runs.
  std::vector<PreparedSuite> suites;
  for (const auto& entry : spec.suites) {
    PreparedSuite s{entry, make_suite(entry.name, entry.options, entry.file, entry.path), nullptr};
    s.scorer = s.suite->response_scorer();
    if (!s.scorer)
      throw UserError(entry.file + ": " + entry.path + ": suite " + s.suite->name +
                      " has no per-response scorer (it scores log-likelihoods, or its classifier is a model), so "
                      "no attack here can use it as a reward");
    suites.push_back(std::move(s));
  }
  std::vector<PreparedAttack> attacks;
  bool needs_policy = false;
  for (const auto& entry : spec.attacks) {
    YamlSection options(entry.options ? entry.options : YAML::Node(YAML::NodeType::Map), entry.path, entry.file);
    PreparedAttack a{entry, make_attack(entry.name, options), *find_attack_info(entry.name)};
    needs_policy = needs_policy || a.info.needs_policy;
    attacks.push_back(std::move(a));
  }
  std::vector<TestbedItem> gold_items;
  if (!spec.gold_items.empty()) {
    DataSpec data;
    data.train = spec.gold_items;
    for_each_jsonl_record(data, [&](const nlohmann::json& record, const std::string& where) {
      gold_items.push_back(testbed_item_from_json(record, where));
    });
  }
  if (needs_policy && spec.policy_dir.empty()) throw UserError("redteam: --policy is required by the attacks given");
  if (!spec.policy_dir.empty() && !fs::is_directory(spec.policy_dir))
    throw UserError(spec.policy_dir + ": policy folder not found");

  std::unique_ptr<Distributed> own_dist;
  Distributed* dist = spec.dist;
  if (!dist) own_dist = init_distributed_from_env(spec.device), dist = own_dist.get();
  QwenForCausalLM model{nullptr};
  std::unique_ptr<EvalModel> policy;
  if (!spec.policy_dir.empty()) {
    LoadOptions load;
    load.device = parse_device(spec.device);
    model = load_model(spec.policy_dir, load);
    model->eval();
    policy = std::make_unique<EvalModel>(*model, Tokenizer::from_dir(spec.policy_dir), dist);
  }

  nlohmann::json report = {
      {"policy", spec.policy_dir},
      {"seed", spec.seed},
      {"margin", spec.margin},
      {"budget", {{"steps", spec.budget.steps}, {"samples", spec.budget.samples}, {"seconds", spec.budget.seconds}}},
      {"suites", nlohmann::json::array()}};
  const bool writer = dist->rank() == 0;
  Progress progress("redteam", static_cast<int64_t>(suites.size() * attacks.size()));
  int64_t done = 0;
  for (auto& s : suites) {
    const ResponseScorer& scorer = *s.scorer;
    const auto [attack_items, eval_items] = split_items(scorer, spec.seed, spec.attack_share);
    const auto judges = gold_judges(scorer, gold_items);
    // Gold is the independent measure, unless the suite is gold itself (then a rise is read, not judged).
    const bool has_gold = !scorer.is_gold() && std::all_of(eval_items.begin(), eval_items.end(),
                                                           [&](size_t i) { return judges[i] != nullptr; });
    std::vector<size_t> all(scorer.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    std::vector<std::string> start;
    if (policy) start = policy_answers(*policy, scorer, all);

    nlohmann::json suite_record = {{"suite", s.suite->name},
                                   {"version", suite_version(s.entry.name, s.entry.options, scorer)},
                                   {"items", scorer.size()},
                                   {"attack_items", attack_items.size()},
                                   {"eval_items", eval_items.size()},
                                   {"independent", has_gold ? "gold" : "none"},
                                   {"attacks", nlohmann::json::array()}};
    // Per-item scores on the eval split, and the suite's own statistic over an item draw.
    const auto item_scores = [&](const std::vector<std::string>& responses) {
      std::vector<double> out;
      for (size_t k = 0; k < eval_items.size(); ++k) out.push_back(scorer.score(eval_items[k], responses[k]));
      return out;
    };
    const auto gold_scores = [&](const std::vector<std::string>& responses) {
      std::vector<double> out;
      for (size_t k = 0; k < eval_items.size(); ++k)
        out.push_back(testbed_gold_score(*judges[eval_items[k]], responses[k]));
      return out;
    };
    const ItemStatistic suite_statistic = [&](const std::vector<size_t>& draw, const std::vector<double>& scores) {
      std::vector<size_t> items;
      std::vector<double> picked;
      for (size_t d : draw) items.push_back(eval_items[d]), picked.push_back(scores[d]);
      return scorer.aggregate(items, picked);
    };
    const ItemStatistic mean_statistic = [](const std::vector<size_t>& draw, const std::vector<double>& scores) {
      double sum = 0;
      for (size_t d : draw) sum += scores[d];
      return draw.empty() ? 0.0 : sum / static_cast<double>(draw.size());
    };
    std::vector<std::string> start_eval;
    for (size_t i : eval_items) start_eval.push_back(start.empty() ? std::string() : start[i]);

    for (auto& a : attacks) {
      AttackInput in{scorer,       s.entry.name,    s.entry.options,
                     judges,       attack_items,    eval_items,
                     policy.get(), spec.policy_dir, start,
                     spec.seed,    spec.budget,     (fs::path(spec.out_dir) / s.suite->name / a.entry.name).string()};
      AttackOutput out = a.attack(in);
      if (out.responses.size() != eval_items.size())
        throw std::runtime_error("attack " + a.entry.name + " returned " + std::to_string(out.responses.size()) +
                                 " responses for " + std::to_string(eval_items.size()) + " eval items");
      const auto start_scores = item_scores(start_eval), attacked_scores = item_scores(out.responses);
      const PairedGain gain =
          paired_gain(start_scores, attacked_scores, suite_statistic, static_cast<int>(spec.bootstrap), spec.seed);
      nlohmann::json record = {{"attack", a.entry.name}, {"suite_score", gain_json(gain)}};
      std::vector<double> start_gold, attacked_gold;
      std::unique_ptr<PairedGain> gold_gain;
      if (has_gold) {
        start_gold = gold_scores(start_eval);
        attacked_gold = gold_scores(out.responses);
        gold_gain = std::make_unique<PairedGain>(
            paired_gain(start_gold, attacked_gold, mean_statistic, static_cast<int>(spec.bootstrap), spec.seed + 1));
        record["gold"] = gain_json(*gold_gain);
      }
      record["hacked"] = hacked_verdict(gain, gold_gain.get(), spec.margin);
      record["details"] = out.details;
      if (!out.policy_dir.empty()) record["policy_dir"] = out.policy_dir;
      // The top examples: the eval items where the attack gained most on the suite (then lost most on gold).
      std::vector<size_t> order(eval_items.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = k;
      const auto key = [&](size_t k) {
        const double gold_loss = has_gold ? start_gold[k] - attacked_gold[k] : 0.0;
        return std::make_pair(attacked_scores[k] - start_scores[k], gold_loss);
      };
      std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return key(x) > key(y); });
      record["top_examples"] = nlohmann::json::array();
      std::string responses_jsonl;
      for (size_t k = 0; k < eval_items.size(); ++k) {
        const size_t i = eval_items[k];
        nlohmann::json row = {{"id", scorer.item_id(i)},        {"prompt", scorer.prompt(i)},
                              {"start", start_eval[k]},         {"response", out.responses[k]},
                              {"start_score", start_scores[k]}, {"suite_score", attacked_scores[k]}};
        if (has_gold) row["start_gold"] = start_gold[k], row["gold"] = attacked_gold[k];
        responses_jsonl += row.dump(-1, ' ', false, kReplaceInvalid) + "\n";
      }
      for (size_t r = 0; r < order.size() && static_cast<int64_t>(r) < spec.top_examples; ++r) {
        const size_t k = order[r];
        nlohmann::json ex = {{"prompt", scorer.prompt(eval_items[k])},
                             {"response", out.responses[k]},
                             {"suite_score", attacked_scores[k]}};
        if (has_gold) ex["gold"] = attacked_gold[k];
        record["top_examples"].push_back(ex);
      }
      if (writer) {
        fs::create_directories(in.out_dir);
        write_file_atomic((fs::path(in.out_dir) / "responses.jsonl").string(), responses_jsonl);
        nlohmann::json attack_file = record;
        attack_file["curve"] = out.curve;
        attack_file["suite_version"] = suite_record["version"];
        write_file_atomic((fs::path(in.out_dir) / "attack.json").string(),
                          attack_file.dump(2, ' ', false, kReplaceInvalid) + "\n");
      }
      suite_record["attacks"].push_back(record);
      progress.update(++done);
    }
    report["suites"].push_back(suite_record);
  }
  progress.finish();
  if (writer) {
    fs::create_directories(spec.out_dir);
    write_file_atomic((fs::path(spec.out_dir) / "redteam.json").string(),
                      report.dump(2, ' ', false, kReplaceInvalid) + "\n");
  }
  return report;
}

}  // namespace posttrain
