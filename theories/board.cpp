#include "theories/board.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/ledger.h"
#include "core/variants.h"
#include "core/yaml_reader.h"
#include "eval_hooks/comparisons.h"
#include "eval_hooks/item_scores_json.h"
#include "theories/scoring.h"
#include "trainers/plugin.h"
#include "trainers/run.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_file(path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path.string() + ": not valid JSON: " + e.what());
  }
}

bool completed(const fs::path& run) { return read_json(run / "manifest.json").value("status", "") == "completed"; }

// What the runs of a matrix say: per variant, per seed, per metric, the per-item scores (an eval
// suite's canonical item scores; a logged metric's last value as one item), the lowest and highest
// item score seen per metric (the range the reference forecaster spreads over), and each variant's
// method and resolved recipe (to check that a proposed new method is the one that ran).
struct Outcomes {
  std::map<std::string, std::map<uint64_t, std::map<std::string, ItemScores>>> scores;
  std::map<std::string, std::pair<double, double>> item_range;
  std::map<std::string, std::pair<std::string, fs::path>> method_and_recipe;
  bool empty() const { return scores.empty(); }
};

// The last numeric value of every key in a run's metrics.jsonl, as "log:<key>".
std::map<std::string, double> last_logged(const fs::path& metrics) {
  std::map<std::string, double> last;
  if (!fs::exists(metrics)) return last;
  std::istringstream lines(read_file(metrics.string()));
  int line_number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_number;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(metrics.string() + ":" + std::to_string(line_number) + ": not valid JSON: " + e.what());
    }
    for (const auto& [key, value] : j.items())
      if (value.is_number() && key != "step") last["log:" + key] = value.get<double>();
  }
  return last;
}

Outcomes read_outcomes(const std::string& runs_dir) {
  Outcomes out;
  const auto record = [&](const std::string& metric, const ItemScores& s) {
    for (double v : s.scores) {
      auto [it, fresh] = out.item_range.try_emplace(metric, v, v);
      it->second.first = std::min(it->second.first, v), it->second.second = std::max(it->second.second, v);
    }
  };
  for (const fs::path run : matrix_run_dirs(runs_dir)) {
    const nlohmann::json manifest = read_json(run / "manifest.json");
    if (manifest.value("status", "") != "completed") continue;
    const std::string name = run_name_of(run.string());
    const std::string variant = name.substr(0, name.find('/'));
    out.method_and_recipe.try_emplace(variant, manifest.value("method", ""), run / "recipe.resolved.yaml");
    auto& metrics = out.scores[variant][manifest.value("seed", uint64_t{0})];
    if (fs::is_directory(run / "evals"))
      for (const auto& entry : fs::directory_iterator(run / "evals")) {
        if (entry.path().extension() != ".json") continue;
        const nlohmann::json summary = read_json(entry.path());
        if (!summary.contains("item_scores")) continue;
        const ItemScores s = item_scores_from_json(summary["item_scores"]);
        metrics[entry.path().stem().string()] = s;
        record(entry.path().stem().string(), s);
      }
    // A logged metric is one number per run: one item, so its uncertainty is the seeds' spread.
    for (const auto& [key, value] : last_logged(run / "metrics.jsonl")) {
      metrics[key] = ItemScores{{"last"}, {value}, {0}};
      record(key, metrics[key]);
    }
  }
  return out;
}

// "" when the matrix's `name` is the method `declared` proposes (same method, and every option it
// sets has that value in the run's resolved recipe); otherwise why not.
std::string differs_from_declared(const Outcomes& outcomes, const nlohmann::json& declared) {
  const std::string name = declared.value("name", "");
  const auto ran = outcomes.method_and_recipe.find(name);
  if (ran == outcomes.method_and_recipe.end()) return "no completed run of " + name;
  const std::string method = declared.value("method", "");
  if (ran->second.first != method) return name + " ran method " + ran->second.first + ", not the proposed " + method;
  if (!declared.contains(method) || !declared[method].is_object()) return "";
  const YAML::Node recipe = load_yaml_file(ran->second.second.string(), "recipe");
  for (const auto& [key, value] : declared[method].items()) {
    const YAML::Node actual = recipe[method] ? recipe[method][key] : YAML::Node();
    const std::string want = value.is_string() ? value.get<std::string>() : value.dump();
    if (!actual || !actual.IsScalar()) return name + " ran without " + method + "." + key;
    char* end_a = nullptr;
    char* end_b = nullptr;
    const double a = std::strtod(actual.Scalar().c_str(), &end_a), b = std::strtod(want.c_str(), &end_b);
    const bool numbers_equal = *end_a == '\0' && *end_b == '\0' && !actual.Scalar().empty() && a == b;
    if (actual.Scalar() != want && !numbers_equal)
      return name + " ran with " + method + "." + key + " = " + actual.Scalar() + ", not the proposed " + want;
  }
  return "";
}

// The variant's scores on `suite` at `seeds` (false when any is missing).
bool scores_at(const Outcomes& outcomes, const std::string& variant, const std::string& suite,
               const std::vector<uint64_t>& seeds, std::vector<ItemScores>* out) {
  out->clear();
  const auto v = outcomes.scores.find(variant);
  if (v == outcomes.scores.end()) return false;
  for (uint64_t seed : seeds) {
    const auto s = v->second.find(seed);
    if (s == v->second.end() || !s->second.count(suite)) return false;
    out->push_back(s->second.at(suite));
  }
  return !out->empty();
}

std::vector<uint64_t> seeds_of(const Outcomes& outcomes, const std::string& variant) {
  std::vector<uint64_t> seeds;
  const auto v = outcomes.scores.find(variant);
  if (v != outcomes.scores.end())
    for (const auto& [seed, suites] : v->second) seeds.push_back(seed);
  return seeds;
}

std::vector<uint64_t> common_seeds(const Outcomes& outcomes, const std::string& a, const std::string& b) {
  const auto sa = seeds_of(outcomes, a), sb = seeds_of(outcomes, b);
  std::vector<uint64_t> both;
  std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(both));
  return both;
}

// "true" / "false" / "undetermined" from an interval against the event's range [low, high].
nlohmann::json decide(double ci_low, double ci_high, double low, double high) {
  if (ci_low >= low && ci_high <= high) return true;
  if (ci_high < low || ci_low > high) return false;
  return "undetermined";
}

constexpr int kResamples = 2000;

// The share of [lo, hi] (every value the mean can take, given the items' observed range) that
// [low, high] covers: the probability a forecaster who knows only that range gives the interval.
// An interval as wide as the range gets 1, so predicting it earns nothing (ln p - ln 1 <= 0).
// Kept inside [1e-6, 1 - 1e-6]: a range of one point, or an interval outside it, stays finite.
double covered_share(double low, double high, double lo, double hi) {
  const double share = hi > lo ? std::max(0.0, std::min(high, hi) - std::max(low, lo)) / (hi - lo)
                               : (low <= lo && lo <= high ? 1.0 : 0.0);
  return std::clamp(share, 1e-6, 1 - 1e-6);
}

// Resolves one prediction: its outcome and what was observed.
nlohmann::json resolve(const Prediction& p, const Outcomes& outcomes) {
  nlohmann::json r = {{"id", p.id}, {"kind", p.kind}, {"metric", p.metric}};
  if (p.kind != "ranking") r["probability"] = p.probability;
  if (!p.new_variant.is_null()) {
    const std::string why = differs_from_declared(outcomes, p.new_variant);
    if (!why.empty()) {
      r["outcome"] = "unresolved";
      r["why"] = why;
      return r;
    }
  }
  std::vector<ItemScores> a, b;
  double reference = 0.5;  // the uniform forecaster's probability of the event
  if (p.kind == "compare") {
    const auto seeds = common_seeds(outcomes, p.better, p.worse);
    r["event"] = p.metric + "[" + p.better + "] > " + p.metric + "[" + p.worse + "]";
    if (!scores_at(outcomes, p.better, p.metric, seeds, &a) || !scores_at(outcomes, p.worse, p.metric, seeds, &b)) {
      r["outcome"] = "unresolved";
      return r;
    }
    const PairedComparison c = compare_paired(a, b, kResamples, 0);
    r["observed"] = {{"difference", c.difference}, {"ci95", {c.low, c.high}}, {"seeds", c.seeds}};
    // The event is strict (better > worse): an interval at or below 0 (e.g. [0, 0], equal in every
    // seed) says it did not happen; one that starts at 0 and rises is undetermined.
    r["outcome"] = c.low > 0 ? nlohmann::json(true) : c.high <= 0 ? nlohmann::json(false) : "undetermined";
  } else if (p.kind == "interval") {
    r["event"] = nlohmann::json(p.low).dump() + " <= " + p.metric + "[" + p.variant + "]" +
                 (p.minus.empty() ? "" : " - " + p.metric + "[" + p.minus + "]") +
                 " <= " + nlohmann::json(p.high).dump();
    if (p.minus.empty()) {
      if (!scores_at(outcomes, p.variant, p.metric, seeds_of(outcomes, p.variant), &a)) {
        r["outcome"] = "unresolved";
        return r;
      }
      const ReplicatedScore s = replicated_score(a, kResamples, 0);
      r["observed"] = {{"mean", s.mean}, {"ci95", {s.low, s.high}}, {"seeds", s.seeds}};
      r["outcome"] = decide(s.low, s.high, p.low, p.high);
      const auto [lo, hi] = outcomes.item_range.at(p.metric);
      reference = covered_share(p.low, p.high, lo, hi);
    } else {
      const auto seeds = common_seeds(outcomes, p.variant, p.minus);
      if (!scores_at(outcomes, p.variant, p.metric, seeds, &a) || !scores_at(outcomes, p.minus, p.metric, seeds, &b)) {
        r["outcome"] = "unresolved";
        return r;
      }
      const PairedComparison c = compare_paired(a, b, kResamples, 0);
      r["observed"] = {{"difference", c.difference}, {"ci95", {c.low, c.high}}, {"seeds", c.seeds}};
      r["outcome"] = decide(c.low, c.high, p.low, p.high);
      const auto [lo, hi] = outcomes.item_range.at(p.metric);
      reference = covered_share(p.low, p.high, lo - hi, hi - lo);
    }
  } else {
    std::vector<std::pair<double, std::string>> means;
    for (const auto& v : p.order) {
      if (!scores_at(outcomes, v, p.metric, seeds_of(outcomes, v), &a)) {
        r["outcome"] = "unresolved";
        r["missing"] = v;
        return r;
      }
      means.emplace_back(replicated_score(a, 1, 0).mean, v);
    }
    std::stable_sort(means.begin(), means.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    std::vector<std::string> observed;
    nlohmann::json observed_means = nlohmann::json::object();
    for (const auto& [mean, v] : means) observed.push_back(v), observed_means[v] = mean;
    r["observed"] = {{"order", observed}, {"means", observed_means}};
    r["tau"] = kendall_tau(p.order, observed);
    r["outcome"] = "ranked";
  }
  if (p.kind != "ranking") r["reference_probability"] = reference;
  if (r["outcome"].is_boolean()) {
    const bool happened = r["outcome"].get<bool>();
    r["log"] = log_score(p.probability, happened);
    r["brier"] = brier_score(p.probability, happened);
    r["skill"] = log_score(p.probability, happened) - log_score(reference, happened);
  }
  return r;
}

// The registration entry of a theory id, or null.
nlohmann::json registration_of(const std::vector<nlohmann::json>& entries, const std::string& id) {
  for (const auto& e : entries)
    if (e.value("kind", "") == "register" && e.value("theory", "") == id) return e;
  return nullptr;
}

}  // namespace

std::string theory_commitment(const Theory& theory, const std::string& salt) {
  return sha256_hex(salt + "\n" + canonical_theory(theory));
}

nlohmann::json register_theory(const Theory& theory, const std::string& ledger, const std::string& salt) {
  const auto entries = read_ledger(ledger);
  if (!registration_of(entries, theory.id).is_null())
    throw UserError(ledger + ": theory " + theory.id + " is already registered (line " +
                    std::to_string(registration_of(entries, theory.id)["seq"].get<int64_t>() + 1) +
                    "); give a revised theory a new id");
  // Post hoc: a variant the theory names has a completed run already.
  const fs::path output = parse_matrix(theory.matrix_file, load_plugins, trainer_data_kind).output_dir;
  nlohmann::json completed_runs = nlohmann::json::array();
  const auto named = named_variants(theory);
  for (const fs::path run : matrix_run_dirs(output.string())) {
    const std::string name = run_name_of(run.string());
    if (std::find(named.begin(), named.end(), name.substr(0, name.find('/'))) != named.end() && completed(run))
      completed_runs.push_back(name);
  }
  return append_ledger(ledger, {{"kind", "register"},
                                {"theory", theory.id},
                                {"commitment", theory_commitment(theory, salt)},
                                {"matrix", theory.matrix},
                                {"matrix_sha256", sha256_file(theory.matrix_file)},
                                {"predictions", theory.predictions.size()},
                                {"assumptions", theory.assumptions.size()},
                                {"post_hoc", !completed_runs.empty()},
                                {"completed_runs", completed_runs}});
}

nlohmann::json reveal_theory(const Theory& theory, const std::string& ledger, const std::string& salt) {
  const auto entries = read_ledger(ledger);
  const nlohmann::json registration = registration_of(entries, theory.id);
  if (registration.is_null()) throw UserError(ledger + ": theory " + theory.id + " was never registered");
  const std::string line = ledger + ":" + std::to_string(registration["seq"].get<int64_t>() + 1);
  if (theory_commitment(theory, salt) != registration["commitment"].get<std::string>())
    throw UserError(line + ": " + theory.file + " with this salt does not match the commitment registered for " +
                    theory.id + " (the file changed since it was registered, or the salt is not the one printed then)");
  return append_ledger(ledger, {{"kind", "reveal"},
                                {"theory", theory.id},
                                {"salt", salt},
                                {"text", nlohmann::json::parse(canonical_theory(theory))}});
}

nlohmann::json review_theory(const std::string& ledger, const std::string& theory_id, const std::string& reviewer,
                             const std::map<std::string, int>& scores) {
  if (registration_of(read_ledger(ledger), theory_id).is_null())
    throw UserError(ledger + ": theory " + theory_id + " was never registered");
  if (reviewer.empty()) throw UserError("review: --reviewer must name the reviewer");
  if (scores.empty()) throw UserError("review: --scores must give at least one criterion=score");
  for (const auto& [criterion, score] : scores)
    if (score < 1 || score > 5)
      throw UserError("review: " + criterion + "=" + std::to_string(score) + " is not in 1..5");
  return append_ledger(ledger, {{"kind", "review"}, {"theory", theory_id}, {"reviewer", reviewer}, {"scores", scores}});
}

nlohmann::json score_theories(const std::string& ledger, const std::string& runs_dir, int min_resolved) {
  const auto entries = read_ledger(ledger);
  if (entries.empty()) throw UserError(ledger + ": the ledger is empty (posttrain theory register first)");
  const Outcomes outcomes = read_outcomes(runs_dir);
  if (outcomes.empty()) throw UserError(runs_dir + ": no completed run with per-item eval scores");

  nlohmann::json theories = nlohmann::json::array();
  std::vector<Forecast> forecasts;
  for (const auto& e : entries) {
    if (e.value("kind", "") != "register") continue;
    const std::string id = e["theory"].get<std::string>();
    nlohmann::json t = {{"id", id},
                        {"registered", e["time"]},
                        {"line", e["seq"].get<int64_t>() + 1},
                        {"post_hoc", e.value("post_hoc", false)},
                        {"assumptions", e.value("assumptions", 0)}};
    const auto reveal = std::find_if(entries.begin(), entries.end(), [&](const nlohmann::json& r) {
      return r.value("kind", "") == "reveal" && r.value("theory", "") == id;
    });
    if (reveal == entries.end()) {
      t["revealed"] = false;
      theories.push_back(t);
      continue;
    }
    // The reveal was checked against the commitment when written; a forged reveal line would have
    // broken the chain, but check again: the scores must rest on what was committed.
    const Theory theory = theory_from_canonical((*reveal)["text"]);
    if (theory_commitment(theory, (*reveal)["salt"].get<std::string>()) != e["commitment"].get<std::string>())
      throw UserError(ledger + ":" + std::to_string((*reveal)["seq"].get<int64_t>() + 1) + ": the reveal of " + id +
                      " does not match its commitment");
    t["revealed"] = true;
    t["title"] = theory.title;
    t["assumption_ids"] = theory.assumptions;
    nlohmann::json predictions = nlohmann::json::array();
    double total_skill = 0, taus = 0;
    int resolved = 0, forecast_count = 0, rankings = 0;
    std::vector<Forecast> own;
    for (const auto& p : theory.predictions) {
      const nlohmann::json r = resolve(p, outcomes);
      if (p.kind != "ranking") {  // every binary forecast counts, decided or not
        ++forecast_count;
        Forecast f{id, r.value("event", p.id), p.probability};
        f.reference = r.value("reference_probability", 0.5);
        f.resolved = r.contains("log");
        if (f.resolved) f.happened = r["outcome"].get<bool>(), total_skill += r["skill"].get<double>(), ++resolved;
        own.push_back(f);
      }
      if (r.contains("tau") && std::isfinite(r["tau"].get<double>())) taus += r["tau"].get<double>(), ++rankings;
      predictions.push_back(r);
    }
    if (!t["post_hoc"].get<bool>())
      forecasts.insert(forecasts.end(), own.begin(), own.end());
    else if (!own.empty()) {  // scored apart: against the reference only, never the field
      const PeerScore alone = peer_scores(own)[0];
      t["mean_log"] = resolved > 0 ? nlohmann::json(alone.mean_log) : nlohmann::json(nullptr);
      t["mean_brier"] = resolved > 0 ? nlohmann::json(alone.mean_brier) : nlohmann::json(nullptr);
      t["peer_vs_uniform"] = alone.peer_vs_uniform;
    }
    t["predictions"] = predictions;
    t["resolved"] = resolved;
    t["forecasts"] = forecast_count;
    t["mean_tau"] = rankings > 0 ? nlohmann::json(taus / rankings) : nlohmann::json(nullptr);
    // Total skill - k/2 ln n: a BIC-like price per assumption (n binary forecasts), shown beside the
    // front, not instead of it.
    t["penalised_skill"] =
        forecast_count > 0
            ? nlohmann::json(total_skill - 0.5 * t["assumptions"].get<double>() * std::log(forecast_count))
            : nlohmann::json(nullptr);
    // Reviews: the mean per criterion, and agreement as the mean over criteria of the spread
    // (population sd) between reviewers (0: they agree).
    std::map<std::string, std::vector<double>> by_criterion;
    std::set<std::string> reviewers;
    for (const auto& r : entries)
      if (r.value("kind", "") == "review" && r.value("theory", "") == id) {
        reviewers.insert(r["reviewer"].get<std::string>());
        for (const auto& [criterion, score] : r["scores"].items())
          by_criterion[criterion].push_back(score.get<double>());
      }
    nlohmann::json review = {{"reviewers", reviewers.size()}, {"mean", nlohmann::json::object()}};
    double spread = 0;
    for (const auto& [criterion, scores] : by_criterion) {
      double mean = 0, sq = 0;
      for (double s : scores) mean += s;
      mean /= static_cast<double>(scores.size());
      for (double s : scores) sq += (s - mean) * (s - mean);
      review["mean"][criterion] = mean;
      spread += std::sqrt(sq / static_cast<double>(scores.size()));
    }
    if (!by_criterion.empty()) review["disagreement_sd"] = spread / static_cast<double>(by_criterion.size());
    t["reviews"] = review;
    theories.push_back(t);
  }

  // Peer scores over the theories registered before the runs (post hoc ones are scored apart). The
  // front ranks by peer_vs_uniform (skill over the range-only forecaster, undecided forecasts at 0),
  // among theories with at least `min_resolved` decided forecasts: one lucky call is not a theory.
  const std::vector<PeerScore> peers = peer_scores(forecasts);
  std::vector<double> front_scores;
  std::vector<int> front_assumptions;
  std::vector<std::string> front_ids;
  for (auto& t : theories) {
    const auto peer = std::find_if(peers.begin(), peers.end(), [&](const PeerScore& p) { return p.theory == t["id"]; });
    if (peer == peers.end()) continue;
    t["mean_log"] = peer->resolved > 0 ? nlohmann::json(peer->mean_log) : nlohmann::json(nullptr);
    t["mean_brier"] = peer->resolved > 0 ? nlohmann::json(peer->mean_brier) : nlohmann::json(nullptr);
    t["peer_vs_field"] = peer->peer_vs_field;
    t["peer_vs_uniform"] = peer->peer_vs_uniform;
    if (peer->resolved < min_resolved) {
      t["off_front"] =
          std::to_string(peer->resolved) + " decided forecast(s), fewer than " + std::to_string(min_resolved);
      continue;
    }
    front_scores.push_back(peer->peer_vs_uniform);
    front_assumptions.push_back(t["assumptions"].get<int>());
    front_ids.push_back(t["id"].get<std::string>());
  }
  nlohmann::json front = nlohmann::json::array();
  for (size_t i : pareto_front(front_scores, front_assumptions)) front.push_back(front_ids[i]);
  return {{"ledger", ledger},
          {"runs", runs_dir},
          {"min_resolved", min_resolved},
          {"theories", theories},
          {"pareto_front", front}};
}

}  // namespace posttrain
