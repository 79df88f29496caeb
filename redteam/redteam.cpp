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
  std::vector<size_t> attack_items, eval_items;
  std::vector<const TestbedItem*> judges;
  bool has_gold = false;
  std::string version;
};

struct PreparedAttack {
  RedteamEntry entry;
  Attack attack;
  AttackInfo info;
};

// Scores attacked answers on the eval split against the starting policy's: the paired gains of the
// suite and of gold, the verdict, the top examples; `rows` gets one responses.jsonl line per item.
nlohmann::json measure(const PreparedSuite& s, const std::vector<std::string>& start_eval,
                       const std::vector<std::string>& responses, const RedteamSpec& spec, std::string* rows) {
  const ResponseScorer& scorer = *s.scorer;
  const auto& eval_items = s.eval_items;
  const auto item_scores = [&](const std::vector<std::string>& answers) {
    std::vector<double> out;
    for (size_t k = 0; k < eval_items.size(); ++k) out.push_back(scorer.score(eval_items[k], answers[k]));
    return out;
  };
  const auto gold_scores = [&](const std::vector<std::string>& answers) {
    std::vector<double> out;
    for (size_t k = 0; k < eval_items.size(); ++k)
      out.push_back(testbed_gold_score(*s.judges[eval_items[k]], answers[k]));
    return out;
  };
  // The suite's own statistic over an item draw (the refusal suite balances its classes on each draw).
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
  const auto start_scores = item_scores(start_eval), attacked_scores = item_scores(responses);
  const PairedGain gain =
      paired_gain(start_scores, attacked_scores, suite_statistic, static_cast<int>(spec.bootstrap), spec.seed);
  nlohmann::json record = {{"suite_score", gain_json(gain)}};
  std::vector<double> start_gold, attacked_gold;
  std::unique_ptr<PairedGain> gold_gain;
  if (s.has_gold) {
    start_gold = gold_scores(start_eval);
    attacked_gold = gold_scores(responses);
    gold_gain = std::make_unique<PairedGain>(
        paired_gain(start_gold, attacked_gold, mean_statistic, static_cast<int>(spec.bootstrap), spec.seed + 1));
    record["gold"] = gain_json(*gold_gain);
  }
  record["hacked"] = hacked_verdict(gain, gold_gain.get(), spec.margin);
  // The top examples: the eval items where the attack gained most on the suite (then lost most on gold).
  std::vector<size_t> order(eval_items.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  const auto key = [&](size_t k) {
    const double gold_loss = s.has_gold ? start_gold[k] - attacked_gold[k] : 0.0;
    return std::make_pair(attacked_scores[k] - start_scores[k], gold_loss);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return key(x) > key(y); });
  record["top_examples"] = nlohmann::json::array();
  for (size_t r = 0; r < order.size() && static_cast<int64_t>(r) < spec.top_examples; ++r) {
    const size_t k = order[r];
    nlohmann::json ex = {
        {"prompt", scorer.prompt(eval_items[k])}, {"response", responses[k]}, {"suite_score", attacked_scores[k]}};
    if (s.has_gold) ex["gold"] = attacked_gold[k];
    record["top_examples"].push_back(ex);
  }
  if (rows)
    for (size_t k = 0; k < eval_items.size(); ++k) {
      const size_t i = eval_items[k];
      nlohmann::json row = {{"id", scorer.item_id(i)},        {"prompt", scorer.prompt(i)},
                            {"start", start_eval[k]},         {"response", responses[k]},
                            {"start_score", start_scores[k]}, {"suite_score", attacked_scores[k]}};
      if (s.has_gold) row["start_gold"] = start_gold[k], row["gold"] = attacked_gold[k];
      *rows += row.dump(-1, ' ', false, kReplaceInvalid) + "\n";
    }
  return record;
}

// A universal string found on one policy, to replay on the others.
struct Found {
  std::string policy, attack;
  size_t suite;
  std::string universal;
  bool suffix;
};

std::string apply_universal(const std::string& universal, const std::string& answer, bool suffix) {
  if (universal.empty()) return answer;
  return suffix ? answer + " " + universal : universal + " " + answer;
}

}  // namespace

std::string policy_label(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename() == "final" && p.has_parent_path()) return p.parent_path().filename().string();
  return p.filename().string();
}

nlohmann::json run_redteam(const RedteamSpec& spec) {
  if (spec.suites.empty()) throw UserError("redteam: no suite given (--suite)");
  if (spec.attacks.empty()) throw UserError("redteam: no attack given (--attack)");
  if (!(spec.margin >= 0)) throw UserError("redteam: --margin must be >= 0");
  if (!(spec.attack_share > 0 && spec.attack_share < 1)) throw UserError("redteam: --attack-share must be in (0, 1)");
  if (spec.budget.steps < 0 || spec.budget.samples < 0 || spec.budget.seconds < 0)
    throw UserError("redteam: a budget must be positive (0 = the attack's default)");

  // Everything is validated before any model is loaded or any attack runs.
  std::vector<TestbedItem> gold_items;
  if (!spec.gold_items.empty()) {
    DataSpec data;
    data.train = spec.gold_items;
    for_each_jsonl_record(data, [&](const nlohmann::json& record, const std::string& where) {
      gold_items.push_back(testbed_item_from_json(record, where));
    });
  }
  std::vector<PreparedSuite> suites;
  for (const auto& entry : spec.suites) {
    PreparedSuite s;
    s.entry = entry;
    s.suite = make_suite(entry.name, entry.options, entry.file, entry.path);
    s.scorer = s.suite->response_scorer();
    if (!s.scorer)
      throw UserError(entry.file + ": " + entry.path + ": suite " + s.suite->name +
                      " has no per-response scorer (it scores log-likelihoods, or its classifier is a model), so "
                      "no attack here can use it as a reward");
    std::tie(s.attack_items, s.eval_items) = split_items(*s.scorer, spec.seed, spec.attack_share);
    s.judges = gold_judges(*s.scorer, gold_items);
    // Gold is the independent measure, unless the suite is gold itself (then a rise is read, not judged).
    s.has_gold = !s.scorer->is_gold() && std::all_of(s.eval_items.begin(), s.eval_items.end(),
                                                     [&](size_t i) { return s.judges[i] != nullptr; });
    s.version = suite_version(entry.name, entry.options, *s.scorer);
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
  std::vector<std::pair<std::string, std::string>> policies;  // (label, dir); "" = no model
  for (const auto& dir : spec.policy_dirs) {
    if (!fs::is_directory(dir)) throw UserError(dir + ": policy folder not found");
    std::string label = policy_label(dir);
    for (int k = 2; std::any_of(policies.begin(), policies.end(), [&](const auto& p) { return p.first == label; }); ++k)
      label = policy_label(dir) + "-" + std::to_string(k);
    policies.emplace_back(label, dir);
  }
  if (policies.empty()) {
    if (needs_policy) throw UserError("redteam: --policy is required by the attacks given");
    policies.emplace_back("no-policy", "");
  }

  std::unique_ptr<Distributed> own_dist;
  Distributed* dist = spec.dist;
  if (!dist) own_dist = init_distributed_from_env(spec.device), dist = own_dist.get();
  const bool writer = dist->rank() == 0;
  nlohmann::json report = {
      {"seed", spec.seed},
      {"margin", spec.margin},
      {"budget", {{"steps", spec.budget.steps}, {"samples", spec.budget.samples}, {"seconds", spec.budget.seconds}}},
      {"runs", nlohmann::json::array()},
      {"transfer", nlohmann::json::array()}};
  Progress progress("redteam", static_cast<int64_t>(policies.size() * suites.size() * attacks.size()));
  int64_t done = 0;
  std::map<std::pair<std::string, size_t>, std::vector<std::string>> start_of;  // (policy, suite) -> eval answers
  std::vector<Found> found;
  for (const auto& [label, dir] : policies) {
    QwenForCausalLM model{nullptr};
    std::unique_ptr<EvalModel> policy;
    if (!dir.empty()) {
      LoadOptions load;
      load.device = parse_device(spec.device);
      model = load_model(dir, load);
      model->eval();
      policy = std::make_unique<EvalModel>(*model, Tokenizer::from_dir(dir), dist);
    }
    nlohmann::json run = {{"policy", label}, {"policy_dir", dir}, {"suites", nlohmann::json::array()}};
    for (size_t si = 0; si < suites.size(); ++si) {
      const PreparedSuite& s = suites[si];
      const ResponseScorer& scorer = *s.scorer;
      std::vector<size_t> all(scorer.size());
      for (size_t i = 0; i < all.size(); ++i) all[i] = i;
      std::vector<std::string> start;
      if (policy) start = policy_answers(*policy, scorer, all);
      std::vector<std::string> start_eval;
      for (size_t i : s.eval_items) start_eval.push_back(start.empty() ? std::string() : start[i]);
      start_of[{label, si}] = start_eval;
      nlohmann::json suite_record = {{"suite", s.suite->name},
                                     {"version", s.version},
                                     {"items", scorer.size()},
                                     {"attack_items", s.attack_items.size()},
                                     {"eval_items", s.eval_items.size()},
                                     {"independent", s.has_gold ? "gold" : "none"},
                                     {"attacks", nlohmann::json::array()}};
      for (auto& a : attacks) {
        AttackInput in{scorer,          s.entry.name,
                       s.entry.options, s.judges,
                       s.attack_items,  s.eval_items,
                       policy.get(),    dir,
                       start,           spec.seed,
                       spec.budget,     (fs::path(spec.out_dir) / label / s.suite->name / a.entry.name).string()};
        AttackOutput out = a.attack(in);
        if (out.responses.size() != s.eval_items.size())
          throw std::runtime_error("attack " + a.entry.name + " returned " + std::to_string(out.responses.size()) +
                                   " responses for " + std::to_string(s.eval_items.size()) + " eval items");
        std::string rows;
        nlohmann::json record = {{"attack", a.entry.name}};
        record.update(measure(s, start_eval, out.responses, spec, &rows));
        record["details"] = out.details;
        record["curve"] = out.curve;
        if (!out.policy_dir.empty()) record["policy_dir"] = out.policy_dir;
        if (out.universal) found.push_back({label, a.entry.name, si, out.universal->text, out.universal->suffix});
        if (writer) {
          fs::create_directories(in.out_dir);
          write_file_atomic((fs::path(in.out_dir) / "responses.jsonl").string(), rows);
          nlohmann::json attack_file = record;
          attack_file["suite_version"] = s.version;
          write_file_atomic((fs::path(in.out_dir) / "attack.json").string(),
                            attack_file.dump(2, ' ', false, kReplaceInvalid) + "\n");
        }
        suite_record["attacks"].push_back(record);
        progress.update(++done);
      }
      run["suites"].push_back(suite_record);
    }
    report["runs"].push_back(run);
  }
  progress.finish();
  // Transfer: each universal string found on one policy, replayed unchanged on every other policy's answers.
  for (const auto& f : found)
    for (const auto& [label, dir] : policies) {
      if (label == f.policy) continue;
      std::vector<std::string> replayed;
      for (const auto& answer : start_of[{label, f.suite}])
        replayed.push_back(apply_universal(f.universal, answer, f.suffix));
      nlohmann::json record = {{"suite", suites[f.suite].suite->name},
                               {"attack", f.attack},
                               {"found_on", f.policy},
                               {"replayed_on", label},
                               {"string", f.universal}};
      nlohmann::json measured = measure(suites[f.suite], start_of[{label, f.suite}], replayed, spec, nullptr);
      measured.erase("top_examples");
      record.update(measured);
      report["transfer"].push_back(record);
    }
  if (writer) {
    fs::create_directories(spec.out_dir);
    write_file_atomic((fs::path(spec.out_dir) / "redteam.json").string(),
                      report.dump(2, ' ', false, kReplaceInvalid) + "\n");
  }
  return report;
}

}  // namespace posttrain
