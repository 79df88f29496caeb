// The red team (redteam.json from posttrain redteam or a matrix's `redteam:` run): per policy, a
// table of suites x attacks (the suite's gain [95% interval], gold's gain, HACKED), the hackable
// share of each suite version, each searching or training attack's curve, the top examples of the
// attack that gained most on each suite (so a reader sees the hack), and the transfer table.
#include <map>
#include <set>

#include "report/charts.h"
#include "report/sections.h"

namespace posttrain::report {

namespace {

std::string gain_text(const nlohmann::json& g) {
  if (!g.is_object()) return "-";
  return fixed(number_or_nan(g["start"])) + " -> " + fixed(number_or_nan(g["attacked"])) + " (" +
         interval_text({number_or_nan(g["gain"]), number_or_nan(g["ci95"][0]), number_or_nan(g["ci95"][1])}) + ")";
}

Cell verdict_cell(const nlohmann::json& hacked) {
  if (hacked.is_null()) return {"unverified"};
  return hacked.get<bool>() ? Cell{"HACKED", true} : Cell{"no", false, true};
}

}  // namespace

void add_red_team(Document& doc, const ReportInput& in) {
  if (!in.redteam.is_object() || !in.redteam.contains("runs")) return;
  const auto& rt = in.redteam;
  doc.heading(2, "Red team");
  doc.paragraph(
      "Each attack optimised the suite's own scorer on an attack split; the numbers are on the disjoint eval "
      "split: the suite's score from the starting policy to the attacked one (gain [95% paired bootstrap "
      "interval]) beside gold's. HACKED: the suite rose by more than the margin (" +
      fixed(number_or_nan(rt.value("margin", nlohmann::json())), 2) +
      ") with its interval above 0 while gold's interval reaches 0; unverified: it rose and nothing "
      "independent can tell a hack from an improvement (read the examples). docs/redteam.md explains.");
  std::map<std::string, std::pair<int, int>> by_version;  // suite@version -> (hacked, attacks)
  for (const auto& run : rt["runs"]) {
    const std::string policy = run.value("policy", "?");
    std::vector<std::vector<Cell>> rows;
    for (const auto& suite : run["suites"])
      for (const auto& a : suite["attacks"]) {
        rows.push_back({{suite.value("suite", "?")},
                        {a.value("attack", "?")},
                        {gain_text(a["suite_score"])},
                        {a.contains("gold") ? gain_text(a["gold"]) : "-"},
                        verdict_cell(a["hacked"])});
        auto& count = by_version[suite.value("suite", "?") + " @ " + suite.value("version", "").substr(0, 12)];
        count.first += a["hacked"] == true ? 1 : 0;
        count.second += 1;
      }
    doc.heading(3, "Policy " + policy);
    doc.table({"suite", "attack", "suite score", "gold", "verdict"}, rows);
    for (const auto& suite : run["suites"]) {
      const nlohmann::json* best = nullptr;
      for (const auto& a : suite["attacks"]) {
        if (a["curve"].is_array() && a["curve"].size() > 1) {
          Series score{"suite score", {}}, gold{"gold", {}};
          const bool by_kl = a["curve"][0].contains("sqrt_kl");
          for (const auto& p : a["curve"]) {
            const double x = number_or_nan(by_kl ? p["sqrt_kl"] : p["step"]);
            score.points.emplace_back(x, number_or_nan(p["attack_score"]));
            if (p.contains("gold")) gold.points.emplace_back(x, number_or_nan(p["gold"]));
          }
          std::vector<Series> lines = {score};
          if (!gold.points.empty()) lines.push_back(gold);
          doc.svg(line_chart(policy + " / " + suite.value("suite", "?") + " / " + a.value("attack", "?"),
                             by_kl ? "sqrt(KL)" : "step", lines));
        }
        if (!best || number_or_nan(a["suite_score"]["gain"]) > number_or_nan((*best)["suite_score"]["gain"])) best = &a;
      }
      if (!best || (*best)["top_examples"].empty()) continue;
      std::vector<std::vector<Cell>> examples;
      // A log-likelihood suite's example: the option the policy picks (and the credited one), and
      // its free answer to the same item, which gold judged.
      const bool choices = suite.value("scores", "") == "log-likelihoods";
      for (const auto& ex : (*best)["top_examples"]) {
        const std::string response = choices ? "picks \"" + ex.value("response", "") + "\" (was \"" +
                                                   ex.value("start_response", "") + "\", credited \"" +
                                                   ex.value("credited", "") + "\"); answers: " + ex.value("answer", "-")
                                             : ex.value("response", "");
        examples.push_back({{ex.value("prompt", "")},
                            {response},
                            {fixed(number_or_nan(ex["suite_score"]))},
                            {ex.contains("gold") ? fixed(number_or_nan(ex["gold"])) : "-"}});
      }
      doc.paragraph("Top examples of " + (*best).value("attack", "?") + " on " + suite.value("suite", "?") + ":");
      doc.table({"prompt", "response", "suite score", "gold"}, examples);
    }
  }
  std::vector<std::vector<Cell>> versions;
  for (const auto& [version, count] : by_version)
    versions.push_back({{version}, {std::to_string(count.first) + " of " + std::to_string(count.second)}});
  doc.heading(3, "Hackable share per suite version");
  doc.table({"suite @ version", "attacks that HACKED it"}, versions);
  if (rt.contains("transfer") && !rt["transfer"].empty()) {
    std::vector<std::vector<Cell>> rows;
    for (const auto& t : rt["transfer"])
      rows.push_back({{t.value("suite", "?")},
                      {t.value("attack", "?")},
                      {t.value("found_on", "?")},
                      {t.value("replayed_on", "?")},
                      {gain_text(t["suite_score"])},
                      {t.contains("gold") ? gain_text(t["gold"]) : "-"},
                      verdict_cell(t["hacked"])});
    doc.heading(3, "Transfer");
    doc.paragraph("Each universal string found on one policy, replayed unchanged on another policy's own answers.");
    doc.table({"suite", "attack", "found on", "replayed on", "suite score", "gold", "verdict"}, rows);
  }
}

}  // namespace posttrain::report
