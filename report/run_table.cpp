// The runs: each one's base and data sha256 (first 12 hex digits) and seed, so a reader sees what
// the controls compared.
#include "report/sections.h"

namespace posttrain::report {

void add_run_table(Document& doc, const ReportInput& in) {
  std::vector<std::vector<Cell>> rows;
  for (const auto& run : in.runs) {
    const auto& m = run.manifest;
    rows.push_back({{run.name},
                    {m.contains("base") ? m["base"].value("sha256", "").substr(0, 12) : std::string("-")},
                    {m.contains("data") ? m["data"].value("sha256", "").substr(0, 12) : std::string("-")},
                    {std::to_string(m.value("seed", 0))}});
  }
  doc.heading(2, "Runs");
  doc.table({"run", "base sha256", "data sha256", "seed"}, rows);
}

}  // namespace posttrain::report
