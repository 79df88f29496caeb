// The scores table: one row per run, one cell per suite (primary score [95% interval], worst case
// over perturbations, consistency, GAMEABLE / CONTAMINATED flags), then a bar chart per suite.
#include <set>

#include "report/charts.h"
#include "report/sections.h"

namespace posttrain::report {

void add_scores(Document& doc, const ReportInput& in) {
  std::set<std::string> suites;
  for (const auto& run : in.runs)
    for (const auto& [suite, summary] : run.evals) suites.insert(suite);
  doc.heading(2, "Scores");
  doc.paragraph(
      "Each cell: the suite's primary score [95% bootstrap interval], its worst case over the prompt "
      "perturbations, the consistency of the chosen content, and flags: GAMEABLE when a degenerate policy beats "
      "chance + margin on that suite, CONTAMINATED when its items or canary appear in the training data.");
  std::vector<std::string> header = {"run", "method", "status", "steps", "final loss"};
  header.insert(header.end(), suites.begin(), suites.end());
  std::vector<std::vector<Cell>> rows;
  for (const auto& run : in.runs) {
    double loss = std::nan("");
    for (const auto& m : run.metrics)
      if (m.contains("loss") && m["loss"].is_number()) loss = m["loss"].get<double>();
    const int64_t steps = run.manifest.contains("budget") ? run.manifest["budget"].value("steps", 0) : 0;
    std::vector<Cell> row = {{run.name}, {run.method}, {run.status}, {std::to_string(steps)}, {fixed(loss, 4)}};
    for (const auto& s : suites) {
      const SuiteCell c = suite_cell(run, s);
      row.push_back({suite_cell_text(c), c.gameable || c.contaminated});
    }
    rows.push_back(row);
  }
  doc.table(header, rows);
  std::string primaries = "Primary scores:";
  for (const auto& s : suites)
    for (const auto& run : in.runs)
      if (run.evals.count(s)) {
        primaries += " " + s + " = " + run.evals.at(s).value("primary", "?") + ";";
        break;
      }
  doc.paragraph(primaries);
  for (const auto& s : suites) {
    std::string primary;
    for (const auto& run : in.runs)
      if (run.evals.count(s)) primary = run.evals.at(s).value("primary", "");
    doc.heading(3, s + " (" + primary + ")", /*html_only=*/true);
    doc.svg(suite_chart(s, in.runs));
  }
}

}  // namespace posttrain::report
