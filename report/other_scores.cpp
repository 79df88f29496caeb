// Every score a suite reports beside its primary one (e.g. refusal's harmful_compliance and
// over_refusal, the two errors its balanced score averages), one table per suite.
#include <set>

#include "report/sections.h"

namespace posttrain::report {

void add_other_scores(Document& doc, const ReportInput& in) {
  std::set<std::string> suites;
  for (const auto& run : in.runs)
    for (const auto& [suite, summary] : run.evals) suites.insert(suite);
  bool any = false;
  for (const auto& suite : suites) {
    std::set<std::string> names;
    for (const auto& run : in.runs) {
      const auto it = run.evals.find(suite);
      if (it == run.evals.end() || !it->second.contains("scores") || !it->second["scores"].is_object()) continue;
      const std::string primary = it->second.value("primary", "");
      for (const auto& [name, score] : it->second["scores"].items())
        if (name != primary) names.insert(name);
    }
    if (names.empty()) continue;
    if (!any) {
      doc.heading(2, "Other scores");
      doc.paragraph(
          "Every other score a suite reports beside its primary one [95% bootstrap interval] (e.g. refusal's two "
          "errors, which its balanced score averages: a method can trade one for the other).");
      any = true;
    }
    std::vector<std::string> header = {"run"};
    header.insert(header.end(), names.begin(), names.end());
    std::vector<std::vector<Cell>> rows;
    for (const auto& run : in.runs) {
      const auto it = run.evals.find(suite);
      if (it == run.evals.end()) continue;
      std::vector<Cell> row = {{run.name}};
      for (const auto& name : names) {
        const nlohmann::json score =
            it->second.contains("scores") ? it->second["scores"].value(name, nlohmann::json()) : nlohmann::json();
        row.push_back({score.is_object() ? interval_text(interval_of(score)) : "-"});
      }
      rows.push_back(row);
    }
    doc.heading(3, suite);
    doc.table(header, rows);
  }
}

}  // namespace posttrain::report
