// The control checks of a matrix: each check passed or not, and every difference outside the method
// section.
#include "report/sections.h"

namespace posttrain::report {

void add_controls(Document& doc, const ReportInput& in) {
  doc.heading(2, "Controls");
  if (!in.controls.is_object()) {
    doc.paragraph("Not checked.");
    return;
  }
  std::vector<std::vector<Cell>> rows;
  for (const auto& c : in.controls["checks"]) {
    const bool passed = c["passed"].get<bool>();
    rows.push_back({{c["check"].get<std::string>()}, {passed ? "yes" : "NO", !passed, passed}});
  }
  doc.table({"check", "passed"}, rows);
  if (in.controls["differences"].empty()) return;
  doc.paragraph("Differences outside the method section:", /*bad=*/true);
  std::vector<ListItem> items;
  for (const auto& d : in.controls["differences"]) {
    ListItem item{d["key"].get<std::string>(), d.contains("variant")
                                                   ? " (replicates of " + d["variant"].get<std::string>() + "):"
                                               : d.contains("seed") ? " (seed " + d["seed"].dump() + "):"
                                                                    : ":"};
    for (const auto& [run, value] : d["values"].items()) item.text += " " + run + "=" + value.get<std::string>();
    items.push_back(item);
  }
  doc.list(items);
}

}  // namespace posttrain::report
