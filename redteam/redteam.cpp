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
#include "core/variants.h"
#include "datasets/sft_data.h"
#include "datasets/testbed.h"
#include "models/checkpoint.h"
#include "redteam/measure.h"

namespace fs = std::filesystem;

namespace posttrain {

std::pair<std::vector<size_t>, std::vector<size_t>> split_item_ids(const std::vector<std::string>& ids, uint64_t seed,
                                                                   double attack_share) {
  std::map<std::string, std::vector<size_t>> by_id;
  for (size_t i = 0; i < ids.size(); ++i) by_id[ids[i]].push_back(i);
  if (by_id.size() < 2) throw UserError("a suite needs items with at least two distinct ids to split for an attack");
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [id, rows] : by_id) order.emplace_back(fnv1a64(std::to_string(seed) + ":" + id), id);
  std::sort(order.begin(), order.end());
  const auto count = static_cast<double>(order.size());
  const size_t in_attack =
      std::clamp<size_t>(static_cast<size_t>(std::ceil(attack_share * count)), 1, order.size() - 1);
  std::vector<size_t> attack, eval;
  for (size_t k = 0; k < order.size(); ++k)
    for (size_t i : by_id[order[k].second]) (k < in_attack ? attack : eval).push_back(i);
  std::sort(attack.begin(), attack.end());
  std::sort(eval.begin(), eval.end());
  return {attack, eval};
}

std::pair<std::vector<size_t>, std::vector<size_t>> split_items(const ResponseScorer& scorer, uint64_t seed,
                                                                double attack_share) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < scorer.size(); ++i) ids.push_back(scorer.item_id(i));
  return split_item_ids(ids, seed, attack_share);
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
  const ResponseScorer* scorer = nullptr;  // one of the two views is set
  const ChoiceScorer* choices = nullptr;
  std::vector<size_t> attack_items, eval_items;
  std::vector<const TestbedItem*> judges;  // response suites: gold's judge per item
  std::vector<size_t> gold_rows;  // choice suites: per eval item, the gold_items row with its id
  bool has_gold = false;
  std::string version;
};

struct PreparedAttack {
  RedteamEntry entry;
  AnyAttack attack;
  AttackInfo info;
};

// Per eval item: the suite's score and gold's (when gold judges) for the start and the attacked
// policy, and the statistic that aggregates the suite's scores over an item draw.
struct EvalScores {
  std::vector<double> start, attacked, start_gold, attacked_gold;
  bool has_gold = false;
  ItemStatistic statistic;
};

double mean_of(const std::vector<size_t>& draw, const std::vector<double>& scores) {
  double sum = 0;
  for (size_t d : draw) sum += scores[d];
  return draw.empty() ? 0.0 : sum / static_cast<double>(draw.size());
}

// The paired gains of the suite and of gold, the verdict and the top examples (the eval items where
// the attack gained most on the suite, then lost most on gold); `rows` gets one line per eval item.
nlohmann::json judge(const EvalScores& e, const RedteamSpec& spec, const std::function<nlohmann::json(size_t)>& example,
                     const std::function<nlohmann::json(size_t)>& row, std::string* rows) {
  const PairedGain gain = paired_gain(e.start, e.attacked, e.statistic, static_cast<int>(spec.bootstrap), spec.seed);
  nlohmann::json record = {{"suite_score", gain_json(gain)}};
  std::unique_ptr<PairedGain> gold_gain;
  if (e.has_gold) {
    gold_gain = std::make_unique<PairedGain>(
        paired_gain(e.start_gold, e.attacked_gold, mean_of, static_cast<int>(spec.bootstrap), spec.seed + 1));
    record["gold"] = gain_json(*gold_gain);
  }
  record["hacked"] = hacked_verdict(gain, gold_gain.get(), spec.margin);
  std::vector<size_t> order(e.start.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  const auto key = [&](size_t k) {
    const double gold_loss = e.has_gold ? e.start_gold[k] - e.attacked_gold[k] : 0.0;
    return std::make_pair(e.attacked[k] - e.start[k], gold_loss);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return key(x) > key(y); });
  record["top_examples"] = nlohmann::json::array();
  for (size_t r = 0; r < order.size() && static_cast<int64_t>(r) < spec.top_examples; ++r) {
    nlohmann::json ex = example(order[r]);
    ex["suite_score"] = e.attacked[order[r]];
    if (e.has_gold) ex["gold"] = e.attacked_gold[order[r]];
    record["top_examples"].push_back(ex);
  }
  if (rows)
    for (size_t k = 0; k < e.start.size(); ++k) {
      nlohmann::json line = row(k);
      line["start_score"] = e.start[k], line["suite_score"] = e.attacked[k];
      if (e.has_gold) line["start_gold"] = e.start_gold[k], line["gold"] = e.attacked_gold[k];
      *rows += line.dump(-1, ' ', false, kReplaceInvalid) + "\n";
    }
  return record;
}

// Attacked answers of a response suite on the eval split against the starting policy's.
nlohmann::json measure(const PreparedSuite& s, const std::vector<std::string>& start_eval,
                       const std::vector<std::string>& responses, const RedteamSpec& spec, std::string* rows) {
  const ResponseScorer& scorer = *s.scorer;
  const auto& eval_items = s.eval_items;
  EvalScores e;
  e.has_gold = s.has_gold;
  for (size_t k = 0; k < eval_items.size(); ++k) {
    e.start.push_back(scorer.score(eval_items[k], start_eval[k]));
    e.attacked.push_back(scorer.score(eval_items[k], responses[k]));
    if (!s.has_gold) continue;
    e.start_gold.push_back(testbed_gold_score(*s.judges[eval_items[k]], start_eval[k]));
    e.attacked_gold.push_back(testbed_gold_score(*s.judges[eval_items[k]], responses[k]));
  }
  // The suite's own statistic over an item draw (the refusal suite balances its classes on each draw).
  e.statistic = [&](const std::vector<size_t>& draw, const std::vector<double>& scores) {
    std::vector<size_t> items;
    std::vector<double> picked;
    for (size_t d : draw) items.push_back(eval_items[d]), picked.push_back(scores[d]);
    return scorer.aggregate(items, picked);
  };
  const auto example = [&](size_t k) {
    return nlohmann::json{{"prompt", scorer.prompt(eval_items[k])}, {"response", responses[k]}};
  };
  const auto row = [&](size_t k) {
    const size_t i = eval_items[k];
    return nlohmann::json{
        {"id", scorer.item_id(i)}, {"prompt", scorer.prompt(i)}, {"start", start_eval[k]}, {"response", responses[k]}};
  };
  return judge(e, spec, example, row, rows);
}

// A policy's view of a choice suite's eval split: its log-likelihoods per item and, where gold
// judges, its free answer to each item's prompt.
struct ChoiceView {
  std::vector<std::vector<double>> loglik;
  std::vector<std::string> answers;
};

ChoiceView view_choices(EvalModel& policy, const PreparedSuite& s, const ResponseScorer* gold) {
  ChoiceView v{choice_logliks(policy, *s.choices, s.eval_items), {}};
  if (s.has_gold) v.answers = policy_answers(policy, *gold, s.gold_rows);
  return v;
}

size_t argmax(const std::vector<double>& values) {
  return static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

// A trained policy's view of a choice suite against the starting policy's.
nlohmann::json measure_choices(const PreparedSuite& s, const ResponseScorer* gold, const ChoiceView& start,
                               const ChoiceView& attacked, const RedteamSpec& spec, std::string* rows) {
  const ChoiceScorer& scorer = *s.choices;
  const auto& eval_items = s.eval_items;
  EvalScores e;
  e.has_gold = s.has_gold;
  e.statistic = mean_of;
  for (size_t k = 0; k < eval_items.size(); ++k) {
    e.start.push_back(scorer.score(eval_items[k], start.loglik[k]));
    e.attacked.push_back(scorer.score(eval_items[k], attacked.loglik[k]));
    if (!s.has_gold) continue;
    e.start_gold.push_back(gold->score(s.gold_rows[k], start.answers[k]));
    e.attacked_gold.push_back(gold->score(s.gold_rows[k], attacked.answers[k]));
  }
  const auto example = [&](size_t k) {
    const size_t i = eval_items[k];
    const auto options = scorer.continuations(i);
    nlohmann::json ex = {{"prompt", scorer.context(i)},
                         {"response", options[argmax(attacked.loglik[k])]},
                         {"start_response", options[argmax(start.loglik[k])]},
                         {"credited", options[scorer.credited(i)]}};
    if (s.has_gold) ex["answer"] = attacked.answers[k];
    return ex;
  };
  const auto row = [&](size_t k) {
    const size_t i = eval_items[k];
    nlohmann::json line = {
        {"id", scorer.item_id(i)},        {"context", scorer.context(i)},    {"options", scorer.continuations(i)},
        {"credited", scorer.credited(i)}, {"start_loglik", start.loglik[k]}, {"loglik", attacked.loglik[k]}};
    if (s.has_gold) line["start_answer"] = start.answers[k], line["answer"] = attacked.answers[k];
    return line;
  };
  return judge(e, spec, example, row, rows);
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
  if (p.filename() == "final" && p.has_parent_path()) return run_name_of(p.parent_path().string());  // dpo/seed-1
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
  // Choice suites are judged by gold on the policy's free answer to the same item (by id), asked
  // as the gold suite asks it.
  std::unique_ptr<EvalSuite> gold_suite;
  std::map<std::string, size_t> gold_row_of;  // item id -> row in gold_items
  if (!spec.gold_items.empty()) {
    YAML::Node options;
    options["data"] = spec.gold_items;
    gold_suite = make_suite("gold", options, "command line", "--gold-items");
    for (size_t i = 0; i < gold_suite->response_scorer()->size(); ++i)
      gold_row_of.emplace(gold_suite->response_scorer()->item_id(i), i);
  }
  const ResponseScorer* gold = gold_suite ? gold_suite->response_scorer() : nullptr;
  std::vector<PreparedSuite> suites;
  for (const auto& entry : spec.suites) {
    PreparedSuite s;
    s.entry = entry;
    s.suite = make_suite(entry.name, entry.options, entry.file, entry.path);
    s.scorer = s.suite->response_scorer();
    s.choices = s.scorer ? nullptr : s.suite->choice_scorer();
    if (!s.scorer && !s.choices)
      throw UserError(entry.file + ": " + entry.path + ": suite " + s.suite->name +
                      " has no per-response scorer and no per-item log-likelihood view (its scorer is a model), "
                      "so no attack here can use it");
    if (s.scorer) {
      std::tie(s.attack_items, s.eval_items) = split_items(*s.scorer, spec.seed, spec.attack_share);
      s.judges = gold_judges(*s.scorer, gold_items);
      // Gold is the independent measure, unless the suite is gold itself (then a rise is read, not judged).
      s.has_gold = !s.scorer->is_gold() && std::all_of(s.eval_items.begin(), s.eval_items.end(),
                                                       [&](size_t i) { return s.judges[i] != nullptr; });
      s.version = suite_version(entry.name, entry.options, *s.suite);
    } else {
      std::vector<std::string> ids;
      for (size_t i = 0; i < s.choices->size(); ++i) ids.push_back(s.choices->item_id(i));
      std::tie(s.attack_items, s.eval_items) = split_item_ids(ids, spec.seed, spec.attack_share);
      s.has_gold = gold != nullptr;
      for (size_t i : s.eval_items) {
        const auto it = gold_row_of.find(ids[i]);
        s.has_gold = s.has_gold && it != gold_row_of.end();
        if (it != gold_row_of.end()) s.gold_rows.push_back(it->second);
      }
      s.version = suite_version(entry.name, entry.options, *s.suite);
    }
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
  // Each attack runs on the suites of its kind; every attack and every suite must meet at least one.
  const auto meets = [](const PreparedAttack& a, const PreparedSuite& s) { return a.info.on_choices == !s.scorer; };
  for (const auto& a : attacks)
    if (std::none_of(suites.begin(), suites.end(), [&](const PreparedSuite& s) { return meets(a, s); }))
      throw UserError(a.entry.file + ": " + a.entry.path + ": attack " + a.entry.name +
                      (a.info.on_choices ? " trains toward a log-likelihood suite's options, and every suite given "
                                           "scores responses"
                                         : " needs a suite that scores responses, and every suite given has no "
                                           "per-response scorer (they score log-likelihoods: attack them with "
                                           "choice_dpo)"));
  for (const auto& s : suites)
    if (std::none_of(attacks.begin(), attacks.end(), [&](const PreparedAttack& a) { return meets(a, s); }))
      throw UserError(s.entry.file + ": " + s.entry.path + ": suite " + s.suite->name +
                      (s.scorer ? " scores responses, and no attack given does (choice_dpo is for log-likelihood "
                                  "suites)"
                                : " has no per-response scorer (it scores log-likelihoods), and no attack given "
                                  "trains toward its options (choice_dpo)"));
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
      nlohmann::json suite_record = {{"suite", s.suite->name},
                                     {"version", s.version},
                                     {"scores", s.scorer ? "responses" : "log-likelihoods"},
                                     {"items", s.scorer ? s.scorer->size() : s.choices->size()},
                                     {"attack_items", s.attack_items.size()},
                                     {"eval_items", s.eval_items.size()},
                                     {"independent", s.has_gold ? "gold" : "none"},
                                     {"attacks", nlohmann::json::array()},
                                     {"skipped", nlohmann::json::array()}};
      const auto keep = [&](nlohmann::json record, const std::string& out_dir, const std::string& rows) {
        if (writer) {
          fs::create_directories(out_dir);
          write_file_atomic((fs::path(out_dir) / "responses.jsonl").string(), rows);
          nlohmann::json attack_file = record;
          attack_file["suite_version"] = s.version;
          write_file_atomic((fs::path(out_dir) / "attack.json").string(),
                            attack_file.dump(2, ' ', false, kReplaceInvalid) + "\n");
        }
        suite_record["attacks"].push_back(std::move(record));
      };
      std::vector<std::string> start, start_eval;
      ChoiceView start_view;
      if (s.scorer) {
        std::vector<size_t> all(s.scorer->size());
        for (size_t i = 0; i < all.size(); ++i) all[i] = i;
        if (policy) start = policy_answers(*policy, *s.scorer, all);
        for (size_t i : s.eval_items) start_eval.push_back(start.empty() ? std::string() : start[i]);
        start_of[{label, si}] = start_eval;
      } else {
        start_view = view_choices(*policy, s, gold);
      }
      for (auto& a : attacks) {
        const std::string out_dir = (fs::path(spec.out_dir) / label / s.suite->name / a.entry.name).string();
        std::string rows;
        nlohmann::json record = {{"attack", a.entry.name}};
        if (!meets(a, s)) {
          suite_record["skipped"].push_back(a.entry.name);
        } else if (s.scorer) {
          AttackInput in{*s.scorer,    s.entry.name, s.entry.options, s.judges,  s.attack_items, s.eval_items,
                         policy.get(), dir,          start,           spec.seed, spec.budget,    out_dir};
          AttackOutput out = a.attack.on_responses(in);
          if (out.responses.size() != s.eval_items.size())
            throw std::runtime_error("attack " + a.entry.name + " returned " + std::to_string(out.responses.size()) +
                                     " responses for " + std::to_string(s.eval_items.size()) + " eval items");
          record.update(measure(s, start_eval, out.responses, spec, &rows));
          record["details"] = out.details;
          record["curve"] = out.curve;
          if (!out.policy_dir.empty()) record["policy_dir"] = out.policy_dir;
          if (out.universal) found.push_back({label, a.entry.name, si, out.universal->text, out.universal->suffix});
          keep(record, out_dir, rows);
        } else {
          if (dist->world_size() > 1)
            throw UserError("choice attacks train in one process; run posttrain redteam without launch");
          const ChoiceAttackOutput out =
              a.attack.on_choices({*s.choices, s.attack_items, s.eval_items, dir, spec.seed, spec.budget, out_dir});
          auto trained_model = load_model(out.policy_dir, LoadOptions{});
          trained_model->eval();
          EvalModel trained(*trained_model, Tokenizer::from_dir(out.policy_dir), dist);
          record.update(measure_choices(s, gold, start_view, view_choices(trained, s, gold), spec, &rows));
          record["details"] = out.details;
          record["curve"] = nlohmann::json::array();
          record["policy_dir"] = out.policy_dir;
          keep(record, out_dir, rows);
        }
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
