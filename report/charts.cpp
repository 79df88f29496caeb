#include "report/charts.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "report/document.h"

namespace posttrain::report {

const char* const kPalette[8] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                 "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

// A horizontal bar per run (from 0) with its interval as a whisker, the audit's chance and threshold
// lines. The axis spans [0, 1] widened to every value and interval, in steps of 0.25 (the gold score
// is negative for a policy that is wrong more often than right).
std::string suite_chart(const std::string& suite, const std::vector<RunSummary>& runs) {
  const int row = 26, left = 150, width = 360, height = row * static_cast<int>(runs.size()) + 40;
  double lo = 0.0, hi = 1.0;
  for (const auto& run : runs) {
    const SuiteCell c = suite_cell(run, suite);
    for (double v : {c.value, c.low, c.high, c.chance})
      if (c.present && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  lo = std::floor(lo * 4) / 4;
  hi = std::ceil(hi * 4) / 4;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 60 << "' height='" << height
      << "' font-family='sans-serif' font-size='12'>";
  const auto x = [&](double v) { return left + static_cast<int>((std::clamp(v, lo, hi) - lo) / (hi - lo) * width); };
  svg << "<line x1='" << x(0.0) << "' y1='10' x2='" << x(0.0) << "' y2='" << height - 20 << "' stroke='#999'/>";
  const double step = hi - lo <= 1.0 ? 0.25 : 0.5;  // round ticks, 5 to 7 of them
  for (double tick = std::ceil(lo / step) * step; tick <= hi + 1e-9; tick += step)
    svg << "<text x='" << x(tick) << "' y='" << height - 5 << "' text-anchor='middle'>" << fixed(tick, 2) << "</text>";
  SuiteCell any;
  for (size_t i = 0; i < runs.size(); ++i) {
    const SuiteCell c = suite_cell(runs[i], suite);
    if (c.present && !any.present) any = c;
    const int y = 12 + row * static_cast<int>(i);
    svg << "<text x='" << left - 6 << "' y='" << y + 14 << "' text-anchor='end'>" << html_escape(runs[i].name)
        << "</text>";
    if (!c.present || !std::isfinite(c.value)) continue;
    svg << "<rect x='" << std::min(x(0.0), x(c.value)) << "' y='" << y + 3 << "' width='"
        << std::abs(x(c.value) - x(0.0)) << "' height='16' fill='" << kPalette[i % 8] << "' opacity='0.8'/>";
    if (std::isfinite(c.low))
      svg << "<line x1='" << x(c.low) << "' y1='" << y + 11 << "' x2='" << x(c.high) << "' y2='" << y + 11
          << "' stroke='black' stroke-width='2'/>";
    svg << "<text x='" << std::max(x(0.0), x(c.value)) + 4 << "' y='" << y + 15 << "'>" << fixed(c.value)
        << (c.gameable ? " (gameable)" : "") << "</text>";
  }
  if (std::isfinite(any.chance))
    svg << "<line x1='" << x(any.chance) << "' y1='8' x2='" << x(any.chance) << "' y2='" << height - 20
        << "' stroke='#555' stroke-dasharray='4,3'/><text x='" << x(any.chance)
        << "' y='8' font-size='10'>chance</text>";
  if (std::isfinite(any.threshold))
    svg << "<line x1='" << x(any.threshold) << "' y1='8' x2='" << x(any.threshold) << "' y2='" << height - 20
        << "' stroke='#d62728' stroke-dasharray='2,2'/>";
  svg << "</svg>";
  return svg.str();
}

// Lines of one metric over steps, one per run that logged it (and whose method is `method`, when
// given: losses of different methods are on different scales).
std::string curve_chart(const std::string& metric, const std::vector<RunSummary>& runs, const std::string& method) {
  std::vector<Series> lines;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!method.empty() && runs[i].method != method) continue;
    Series line{runs[i].name, {}, static_cast<int>(i)};  // a run keeps its colour in every chart
    for (const auto& m : runs[i].metrics)
      if (m.contains(metric) && m[metric].is_number())
        line.points.emplace_back(m.value("step", 0.0), m[metric].get<double>());
    if (!line.points.empty()) lines.push_back(std::move(line));
  }
  return line_chart(metric + (method.empty() ? "" : " (" + method + ")"), "step", lines);
}

// Each reward/* of one RL run (gained since its first step) against d = sqrt(KL to the start).
std::string reward_vs_kl_chart(const RunSummary& run) {
  std::map<std::string, Series> series;
  std::map<std::string, double> first;
  double max_d = 0;
  for (const auto& m : run.metrics) {
    if (!m.contains("kl") || !m["kl"].is_number()) continue;
    const double d = std::sqrt(std::max(0.0, m["kl"].get<double>()));
    for (const auto& [key, value] : m.items())
      if (key.rfind("reward/", 0) == 0 && key != "reward/std" && value.is_number()) {
        if (!first.count(key)) first[key] = value.get<double>();
        series[key].name = key;
        series[key].points.emplace_back(d, value.get<double>() - first[key]);
        max_d = std::max(max_d, d);
      }
  }
  if (series.empty() || max_d <= 0) return "";
  std::vector<Series> lines;
  for (auto& [name, s] : series) lines.push_back(std::move(s));
  return line_chart(run.name + ": reward gained vs sqrt(KL)", "d =", lines);
}

std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series) {
  double min_x = INFINITY, max_x = -INFINITY, min_y = INFINITY, max_y = -INFINITY;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y))
        min_x = std::min(min_x, x), max_x = std::max(max_x, x), min_y = std::min(min_y, y), max_y = std::max(max_y, y);
    for (const auto& [low, high] : s.whiskers)
      if (std::isfinite(low) && std::isfinite(high)) min_y = std::min(min_y, low), max_y = std::max(max_y, high);
  }
  if (!std::isfinite(min_x)) return "";
  if (max_x == min_x) max_x = min_x + 1;
  if (max_y == min_y) max_y = min_y + 1;
  const int left = 50, top = 20, width = 420, height = 180;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 160 << "' height='" << top + height + 30
      << "' font-family='sans-serif' font-size='11'><text x='" << left << "' y='12' font-weight='bold'>"
      << html_escape(title) << "</text><rect x='" << left << "' y='" << top << "' width='" << width << "' height='"
      << height << "' fill='none' stroke='#999'/>";
  svg << "<text x='" << left - 4 << "' y='" << top + 10 << "' text-anchor='end'>" << fixed(max_y, 2) << "</text>";
  svg << "<text x='" << left - 4 << "' y='" << top + height << "' text-anchor='end'>" << fixed(min_y, 2) << "</text>";
  svg << "<text x='" << left << "' y='" << top + height + 14 << "'>" << html_escape(x_label) << " " << fixed(min_x, 2)
      << "</text><text x='" << left + width << "' y='" << top + height + 14 << "' text-anchor='end'>" << fixed(max_x, 2)
      << "</text>";
  for (size_t k = 0; k < series.size(); ++k) {
    std::string line;
    for (const auto& [x, y] : series[k].points)
      if (std::isfinite(x) && std::isfinite(y))
        line += fixed(left + width * (x - min_x) / (max_x - min_x), 1) + "," +
                fixed(top + height * (1 - (y - min_y) / (max_y - min_y)), 1) + " ";
    const char* colour = kPalette[(series[k].colour >= 0 ? static_cast<size_t>(series[k].colour) : k) % 8];
    svg << "<polyline fill='none' stroke='" << colour << "' stroke-width='1.5' points='" << line << "'/>";
    const auto px = [&](double x) { return fixed(left + width * (x - min_x) / (max_x - min_x), 1); };
    const auto py = [&](double y) { return fixed(top + height * (1 - (y - min_y) / (max_y - min_y)), 1); };
    for (size_t i = 0; i < series[k].whiskers.size() && i < series[k].points.size(); ++i) {
      const auto [low, high] = series[k].whiskers[i];
      const double x = series[k].points[i].first;
      if (!std::isfinite(low) || !std::isfinite(high) || !std::isfinite(x)) continue;
      svg << "<line x1='" << px(x) << "' y1='" << py(low) << "' x2='" << px(x) << "' y2='" << py(high) << "' stroke='"
          << colour << "' stroke-width='1'/><circle cx='" << px(x) << "' cy='" << py(series[k].points[i].second)
          << "' r='2.5' fill='" << colour << "'/>";
    }
    svg << "<text x='" << left + width + 8 << "' y='" << top + 12 + 14 * static_cast<int>(k) << "' fill='" << colour
        << "'>" << html_escape(series[k].name) << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace posttrain::report
