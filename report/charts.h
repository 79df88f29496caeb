// The report's inline SVG charts (HTML only): a suite's scores as bars with intervals, a metric's
// curves over steps, and an RL run's rewards against sqrt(KL to the start).
#pragma once

#include <string>
#include <vector>

#include "report/runs.h"

namespace posttrain::report {

// A horizontal bar per run (from 0) with its interval as a whisker, the audit's chance and threshold
// lines; the axis spans [0, 1] widened to every value and interval.
std::string suite_chart(const std::string& suite, const std::vector<RunSummary>& runs);
// Lines of one metric over steps, one per run that logged it (and whose method is `method`, if given).
std::string curve_chart(const std::string& metric, const std::vector<RunSummary>& runs, const std::string& method = "");
// Each reward/* of one RL run (gained since its first step) against d = sqrt(KL to the start).
std::string reward_vs_kl_chart(const RunSummary& run);
// Lines of (x, y) points, one per named series, with the axes' labels ("" when nothing to draw).
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  int colour = -1;  // palette index; -1: the series' position
  std::vector<std::pair<double, double>> whiskers;  // optional, per point: an interval drawn as a vertical bar
};
std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series);

extern const char* const kPalette[8];

}  // namespace posttrain::report
