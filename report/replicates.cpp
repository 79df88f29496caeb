// The replicates section: per variant and suite the mean over seeds, the between-seed sd and a
// hierarchical bootstrap interval (seeds, then items); every pair of variants on every suite
// compared on the same items and seeds (paired bootstrap), Holm-Bonferroni across all of them, the
// differences that survive, and the minimum detectable difference; the same numbers as JSON
// (report.json) for other tools; and, for sweeps, the score against the swept option.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include "core/rng.h"
#include "eval_hooks/comparisons.h"
#include "eval_hooks/item_scores_json.h"
#include "report/charts.h"
#include "report/sections.h"

namespace posttrain::report {

namespace {

constexpr double kAlpha = 0.05;
constexpr int kResamples = 2000;  // a variant's interval
// A comparison's: its smallest p is 2 / (R + 1), and Holm over ~50 comparisons needs p < 0.001 to
// survive, so R must resolve well below that (2,000 resamples would floor every Holm p at 0.045).
constexpr int kComparisonResamples = 20000;

// A run's per-item scores on a suite, when its summary has them.
bool item_scores_of(const RunSummary& run, const std::string& suite, ItemScores* out) {
  const auto it = run.evals.find(suite);
  if (it == run.evals.end() || !it->second.contains("item_scores")) return false;
  *out = item_scores_from_json(it->second["item_scores"]);
  return !out->ids.empty();
}

// A variant's runs by seed (runs named "<variant>/seed-<s>", or one run named "<variant>").
struct VariantRuns {
  std::string name;
  std::map<uint64_t, const RunSummary*> by_seed;
};

std::vector<VariantRuns> group_variants(const std::vector<RunSummary>& runs) {
  std::vector<VariantRuns> out;
  for (const auto& run : runs) {
    const std::string variant = run.name.substr(0, run.name.find('/'));
    auto it = std::find_if(out.begin(), out.end(), [&](const VariantRuns& v) { return v.name == variant; });
    if (it == out.end()) it = out.insert(out.end(), VariantRuns{variant, {}});
    it->by_seed[run.manifest.value("seed", uint64_t{0})] = &run;
  }
  return out;
}

// The variant's item scores on `suite` at each of `seeds` (false if any seed lacks them).
bool scores_at(const VariantRuns& v, const std::string& suite, const std::vector<uint64_t>& seeds,
               std::vector<ItemScores>* out) {
  out->clear();
  for (uint64_t s : seeds) {
    const auto it = v.by_seed.find(s);
    ItemScores items;
    if (it == v.by_seed.end() || !item_scores_of(*it->second, suite, &items)) return false;
    out->push_back(std::move(items));
  }
  return !out->empty();
}

std::vector<uint64_t> seeds_of(const VariantRuns& v) {
  std::vector<uint64_t> seeds;
  for (const auto& [seed, run] : v.by_seed) seeds.push_back(seed);
  return seeds;
}

std::string signed_fixed(double v) { return (v >= 0 ? "+" : "") + fixed(v); }

std::string p_text(double p) { return p < 0.001 ? "< 0.001" : fixed(p); }

}  // namespace

nlohmann::json add_replicates(Document& doc, const ReportInput& in) {
  const std::vector<VariantRuns> variants = group_variants(in.runs);
  std::set<std::string> suite_set;
  for (const auto& run : in.runs)
    for (const auto& [suite, summary] : run.evals)
      if (summary.contains("item_scores")) suite_set.insert(suite);
  const std::vector<std::string> suites(suite_set.begin(), suite_set.end());
  if (suites.empty()) return nullptr;  // runs evaluated before per-item scores were kept
  size_t most_seeds = 0;
  for (const auto& v : variants) most_seeds = std::max(most_seeds, v.by_seed.size());

  doc.heading(2, "Replicates and method differences");
  doc.paragraph(
      "Per variant and suite: the mean over seeds ± the between-seed standard deviation, and a 95% interval from a "
      "hierarchical bootstrap (seeds drawn with replacement, then items within each drawn seed). " +
      std::string(most_seeds > 1 ? ""
                                 : "One seed per variant: the intervals cover item sampling only, not the luck of "
                                   "the seed; run the matrix with seeds: [0, 1, 2] to measure it. "));
  nlohmann::json json_scores = nlohmann::json::array();
  {
    std::vector<std::string> header = {"variant", "seeds"};
    header.insert(header.end(), suites.begin(), suites.end());
    std::vector<std::vector<Cell>> rows;
    for (const auto& v : variants) {
      const std::vector<uint64_t> seeds = seeds_of(v);
      std::vector<Cell> row = {{v.name}, {std::to_string(seeds.size())}};
      for (const auto& suite : suites) {
        std::vector<ItemScores> scores;
        if (!scores_at(v, suite, seeds, &scores)) {
          row.push_back({"-"});
          continue;
        }
        const ReplicatedScore r = replicated_score(scores, kResamples, fnv1a64(v.name + "|" + suite));
        row.push_back({fixed(r.mean) + " ± " + fixed(r.seed_sd) + " [" + fixed(r.low) + ", " + fixed(r.high) + "]"});
        json_scores.push_back({{"variant", v.name},
                               {"suite", suite},
                               {"seeds", seeds},
                               {"mean", r.mean},
                               {"seed_sd", r.seed_sd},
                               {"ci95", {r.low, r.high}}});
      }
      rows.push_back(row);
    }
    doc.table(header, rows);
  }

  // Every pair of variants on every suite, on the seeds both ran.
  struct Row {
    std::string a, b, suite;
    PairedComparison c;
  };
  std::vector<Row> comparisons;
  std::vector<std::string> unpaired;  // comparisons whose items do not pair (a suite changed between runs)
  for (size_t i = 0; i < variants.size(); ++i)
    for (size_t j = i + 1; j < variants.size(); ++j) {
      std::vector<uint64_t> both;
      const auto si = seeds_of(variants[i]), sj = seeds_of(variants[j]);
      std::set_intersection(si.begin(), si.end(), sj.begin(), sj.end(), std::back_inserter(both));
      for (const auto& suite : suites) {
        std::vector<ItemScores> a, b;
        if (both.empty() || !scores_at(variants[i], suite, both, &a) || !scores_at(variants[j], suite, both, &b))
          continue;
        try {
          comparisons.push_back({variants[i].name, variants[j].name, suite,
                                 compare_paired(a, b, kComparisonResamples,
                                                fnv1a64(variants[i].name + "|" + variants[j].name + "|" + suite))});
        } catch (const std::exception& e) {
          unpaired.push_back(variants[i].name + " − " + variants[j].name + " on " + suite + ": " + e.what());
        }
      }
    }
  if (!unpaired.empty()) {
    std::vector<ListItem> items;
    for (const auto& u : unpaired) items.push_back({"", u});
    doc.paragraph("Not compared (their items do not pair):", /*bad=*/true);
    doc.list(items);
  }
  if (comparisons.empty()) return {{"scores", json_scores}, {"comparisons", nlohmann::json::array()}};
  std::vector<double> p;
  for (const auto& r : comparisons) p.push_back(r.c.p_value);
  const std::vector<double> adjusted = holm_adjust(p);

  doc.heading(3, "Differences that survive");
  doc.paragraph(
      "A − B on each suite, paired on the same items and seeds (a paired hierarchical bootstrap of " +
      std::to_string(kComparisonResamples) +
      " resamples: each draws seeds, then items within them, the same draw for both variants). p is two-sided; "
      "p (Holm) is Holm-Bonferroni adjusted over all " +
      std::to_string(comparisons.size()) +
      " comparisons (variant pairs × suites), and a difference survives when it "
      "is below " +
      fixed(kAlpha, 2) +
      " (family-wise error at most 5%). MDD: the smallest true difference this design detects with 80% power at "
      "alpha 0.05 uncorrected; a difference smaller than that is not evidence of no difference.");
  std::vector<std::vector<Cell>> survivors, all;
  nlohmann::json json_comparisons = nlohmann::json::array();
  for (size_t k = 0; k < comparisons.size(); ++k) {
    const Row& r = comparisons[k];
    const bool survives = adjusted[k] < kAlpha;
    std::vector<Cell> row = {{r.a + " − " + r.b},
                             {r.suite},
                             {signed_fixed(r.c.difference) + " [" + fixed(r.c.low) + ", " + fixed(r.c.high) + "]"},
                             {p_text(r.c.p_value)},
                             {p_text(adjusted[k]), false, survives},
                             {fixed(r.c.min_detectable)},
                             {std::to_string(r.c.seeds)}};
    if (survives) survivors.push_back(row);
    row.push_back({survives ? "yes" : "no", false, survives});
    all.push_back(row);
    json_comparisons.push_back({{"a", r.a},
                                {"b", r.b},
                                {"suite", r.suite},
                                {"difference", r.c.difference},
                                {"ci95", {r.c.low, r.c.high}},
                                {"p", r.c.p_value},
                                {"p_holm", adjusted[k]},
                                {"survives", survives},
                                {"min_detectable", r.c.min_detectable},
                                {"standard_error", r.c.standard_error},
                                {"seeds", r.c.seeds},
                                {"items", r.c.items}});
  }
  const std::vector<std::string> header = {"A − B", "suite", "difference [95%]", "p", "p (Holm)", "MDD", "seeds"};
  if (survivors.empty())
    doc.paragraph("No difference survives the correction.");
  else
    doc.table(header, survivors);
  doc.heading(3, "All comparisons");
  std::vector<std::string> all_header = header;
  all_header.push_back("survives");
  doc.table(all_header, all);

  // Sweeps: the score against the swept option, one chart per sweep and suite.
  nlohmann::json json_sweeps = nlohmann::json::array();
  if (in.layout.is_object() && in.layout.contains("runs")) {
    std::map<std::pair<std::string, std::string>, std::vector<std::pair<std::string, std::string>>> sweeps;
    for (const auto& run : in.layout["runs"]) {
      if (!run.contains("sweep")) continue;
      const auto key = std::make_pair(run["sweep"]["of"].get<std::string>(), run["sweep"]["key"].get<std::string>());
      const auto point = std::make_pair(run["sweep"]["value"].get<std::string>(), run["variant"].get<std::string>());
      auto& points = sweeps[key];
      if (std::find(points.begin(), points.end(), point) == points.end()) points.push_back(point);
    }
    for (const auto& [sweep, points] : sweeps) {
      doc.heading(3, "Sweep of " + sweep.first + ": " + sweep.second, /*html_only=*/true);
      for (const auto& suite : suites) {
        Series line{suite, {}, -1};
        nlohmann::json json_points = nlohmann::json::array();
        for (size_t k = 0; k < points.size(); ++k) {
          const auto& [value, variant] = points[k];
          const auto v =
              std::find_if(variants.begin(), variants.end(), [&](const VariantRuns& r) { return r.name == variant; });
          std::vector<ItemScores> scores;
          if (v == variants.end() || !scores_at(*v, suite, seeds_of(*v), &scores)) continue;
          const ReplicatedScore r = replicated_score(scores, kResamples, fnv1a64(variant + "|" + suite));
          char* end = nullptr;
          const double x = std::strtod(value.c_str(), &end);
          const bool numeric = end != value.c_str() && *end == '\0';
          line.points.emplace_back(numeric ? x : static_cast<double>(k), r.mean);
          line.whiskers.emplace_back(r.low, r.high);
          json_points.push_back({{"value", value}, {"variant", variant}, {"mean", r.mean}, {"ci95", {r.low, r.high}}});
        }
        if (line.points.empty()) continue;
        doc.svg(
            line_chart(suite + " against " + sweep.second + " (mean over seeds, 95% interval)", sweep.second, {line}));
        json_sweeps.push_back({{"of", sweep.first}, {"key", sweep.second}, {"suite", suite}, {"points", json_points}});
      }
    }
  }
  return {{"alpha", kAlpha},
          {"correction", "holm"},
          {"resamples", kComparisonResamples},
          {"scores", json_scores},
          {"comparisons", json_comparisons},
          {"sweeps", json_sweeps}};
}

}  // namespace posttrain::report
