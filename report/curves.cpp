// Training curves (HTML): the loss of each method's runs, then every KL and reward metric logged.
#include <set>

#include "report/charts.h"
#include "report/sections.h"

namespace posttrain::report {

void add_curves(Document& doc, const ReportInput& in) {
  std::set<std::string> metrics, methods;
  for (const auto& run : in.runs) {
    methods.insert(run.method);
    for (const auto& m : run.metrics)
      for (const auto& [key, value] : m.items())
        if (key == "kl" || key.rfind("reward/", 0) == 0 || key == "rewards/margins") metrics.insert(key);
  }
  doc.heading(2, "Training curves", /*html_only=*/true);
  for (const auto& method : methods) doc.svg(curve_chart("loss", in.runs, method));  // losses differ in scale
  for (const auto& metric : metrics) doc.svg(curve_chart(metric, in.runs));
}

}  // namespace posttrain::report
