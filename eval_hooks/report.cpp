#include "eval_hooks/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "eval_hooks/overoptimization.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

struct RunSummary {
  std::string name, method, status;
  nlohmann::json manifest;
  std::map<std::string, nlohmann::json> evals;  // suite -> after_run summary
  std::vector<nlohmann::json> metrics;  // metrics.jsonl lines
};

RunSummary read_run(const std::string& dir) {
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path)) throw UserError(dir + ": not a run folder (no manifest.json)");
  RunSummary run;
  run.name = fs::path(dir).lexically_normal().filename().string();
  if (run.name.empty()) run.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  run.manifest = nlohmann::json::parse(read_file(manifest_path));
  run.method = run.manifest.value("method", "?");
  run.status = run.manifest.value("status", "?");
  const fs::path evals = fs::path(dir) / "evals";
  if (fs::exists(evals))
    for (const auto& entry : fs::directory_iterator(evals))
      if (entry.path().extension() == ".json") {
        auto summary = nlohmann::json::parse(read_file(entry.path().string()));
        run.evals[entry.path().stem().string()] = summary;
      }
  std::ifstream in((fs::path(dir) / "metrics.jsonl").string());
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) run.metrics.push_back(nlohmann::json::parse(line));
  return run;
}

std::string fixed(double v, int digits = 3) {
  if (!std::isfinite(v)) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

double number_or_nan(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

// One score of a suite's summary: {"value", "ci95": [low, high]}; missing numbers are NaN.
struct ScoreInterval {
  double value = std::nan(""), low = std::nan(""), high = std::nan("");
};

ScoreInterval interval_of(const nlohmann::json& score) {
  ScoreInterval out;
  if (!score.is_object()) return out;
  out.value = number_or_nan(score.value("value", nlohmann::json()));
  if (score.contains("ci95") && score["ci95"].is_array() && score["ci95"].size() == 2) {
    out.low = number_or_nan(score["ci95"][0]);
    out.high = number_or_nan(score["ci95"][1]);
  }
  return out;
}

// "value [low, high]" to 3 decimals ("-" for a missing number).
std::string interval_text(const ScoreInterval& s) {
  return fixed(s.value) + " [" + fixed(s.low) + ", " + fixed(s.high) + "]";
}

// The cell of one suite for one run: primary score, interval, worst case, consistency, flags.
struct Cell {
  bool present = false;
  std::string primary;
  double value = std::nan(""), low = std::nan(""), high = std::nan(""), worst = std::nan(""),
         consistency = std::nan("");
  bool gameable = false, contaminated = false;
  double chance = std::nan(""), threshold = std::nan("");
};

Cell cell_of(const RunSummary& run, const std::string& suite) {
  Cell c;
  const auto it = run.evals.find(suite);
  if (it == run.evals.end()) return c;
  const nlohmann::json& s = it->second;
  c.present = true;
  c.primary = s.value("primary", "");
  if (s.contains("scores") && s["scores"].contains(c.primary)) {
    const ScoreInterval score = interval_of(s["scores"][c.primary]);
    c.value = score.value;
    c.low = score.low;
    c.high = score.high;
  }
  if (s.contains("robustness")) {
    c.worst = number_or_nan(s["robustness"].value("worst", nlohmann::json()));
    c.consistency = number_or_nan(s["robustness"].value("consistency", nlohmann::json()));
  }
  if (s.contains("audit")) {
    c.gameable = s["audit"].value("gameable", false);
    c.chance = number_or_nan(s["audit"].value("chance", nlohmann::json()));
    c.threshold = number_or_nan(s["audit"].value("threshold", nlohmann::json()));
  }
  if (s.contains("contamination"))
    c.contaminated =
        s["contamination"].value("canary_found", false) || s["contamination"].value("items_overlapping", 0) > 0;
  return c;
}

std::string cell_text(const Cell& c) {
  if (!c.present) return "-";
  std::string text = interval_text({c.value, c.low, c.high});
  if (std::isfinite(c.worst)) text += " worst " + fixed(c.worst);
  if (std::isfinite(c.consistency)) text += " cons " + fixed(c.consistency, 2);
  if (c.gameable) text += " GAMEABLE";
  if (c.contaminated) text += " CONTAMINATED";
  return text;
}

// A suite's scores other than its primary one (e.g. refusal's harmful_compliance and over_refusal,
// the two errors its balanced score averages), as rows of run name and "value [low, high]" per score.
struct ScoreTable {
  std::vector<std::string> scores;  // column names
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;  // run -> one cell per score
};

ScoreTable other_scores(const std::string& suite, const std::vector<RunSummary>& runs) {
  ScoreTable table;
  std::set<std::string> names;
  for (const auto& run : runs) {
    const auto it = run.evals.find(suite);
    if (it == run.evals.end() || !it->second.contains("scores") || !it->second["scores"].is_object()) continue;
    const std::string primary = it->second.value("primary", "");
    for (const auto& [name, score] : it->second["scores"].items())
      if (name != primary) names.insert(name);
  }
  table.scores.assign(names.begin(), names.end());
  if (table.scores.empty()) return table;
  for (const auto& run : runs) {
    const auto it = run.evals.find(suite);
    if (it == run.evals.end()) continue;
    std::vector<std::string> cells;
    for (const auto& name : table.scores) {
      const nlohmann::json score =
          it->second.contains("scores") ? it->second["scores"].value(name, nlohmann::json()) : nlohmann::json();
      cells.push_back(score.is_object() ? interval_text(interval_of(score)) : "-");
    }
    table.rows.emplace_back(run.name, cells);
  }
  return table;
}

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

// A horizontal bar per run (from 0) with its interval as a whisker, the audit's chance and threshold
// lines. The axis spans [0, 1] widened to every value and interval, in steps of 0.25 (the gold score
// is negative for a policy that is wrong more often than right).
std::string suite_chart(const std::string& suite, const std::vector<RunSummary>& runs) {
  const int row = 26, left = 150, width = 360, height = row * static_cast<int>(runs.size()) + 40;
  double lo = 0.0, hi = 1.0;
  for (const auto& run : runs) {
    const Cell c = cell_of(run, suite);
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
  Cell any;
  for (size_t i = 0; i < runs.size(); ++i) {
    const Cell c = cell_of(runs[i], suite);
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
std::string curve_chart(const std::string& metric, const std::vector<RunSummary>& runs,
                        const std::string& method = "") {
  double min_v = INFINITY, max_v = -INFINITY, min_step = INFINITY, max_step = -INFINITY;
  const auto shown = [&](const RunSummary& run) { return method.empty() || run.method == method; };
  for (const auto& run : runs)
    for (const auto& m : run.metrics)
      if (shown(run) && m.contains(metric) && m[metric].is_number()) {
        min_v = std::min(min_v, m[metric].get<double>());
        max_v = std::max(max_v, m[metric].get<double>());
        min_step = std::min(min_step, m.value("step", 0.0));
        max_step = std::max(max_step, m.value("step", 0.0));
      }
  if (!std::isfinite(min_v)) return "";
  if (max_v == min_v) max_v = min_v + 1;
  if (max_step == min_step) max_step = min_step + 1;
  const int left = 50, top = 20, width = 420, height = 180;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 130 << "' height='" << top + height + 30
      << "' font-family='sans-serif' font-size='11'><text x='" << left << "' y='12' font-weight='bold'>"
      << html_escape(metric + (method.empty() ? "" : " (" + method + ")")) << "</text>";
  svg << "<rect x='" << left << "' y='" << top << "' width='" << width << "' height='" << height
      << "' fill='none' stroke='#999'/>";
  svg << "<text x='" << left - 4 << "' y='" << top + 10 << "' text-anchor='end'>" << fixed(max_v, 2) << "</text>";
  svg << "<text x='" << left - 4 << "' y='" << top + height << "' text-anchor='end'>" << fixed(min_v, 2) << "</text>";
  svg << "<text x='" << left << "' y='" << top + height + 14 << "'>step " << static_cast<int64_t>(min_step)
      << "</text><text x='" << left + width << "' y='" << top + height + 14 << "' text-anchor='end'>step "
      << static_cast<int64_t>(max_step) << "</text>";
  int legend = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    std::string points;
    if (!shown(runs[i])) continue;
    for (const auto& m : runs[i].metrics)
      if (m.contains(metric) && m[metric].is_number()) {
        const double px = left + width * (m.value("step", 0.0) - min_step) / (max_step - min_step);
        const double py = top + height * (1.0 - (m[metric].get<double>() - min_v) / (max_v - min_v));
        points += fixed(px, 1) + "," + fixed(py, 1) + " ";
      }
    if (points.empty()) continue;
    svg << "<polyline fill='none' stroke='" << kPalette[i % 8] << "' stroke-width='1.5' points='" << points << "'/>";
    svg << "<text x='" << left + width + 8 << "' y='" << top + 12 + 14 * legend++ << "' fill='" << kPalette[i % 8]
        << "'>" << html_escape(runs[i].name) << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

// Each reward/* of one RL run (gained since its first step) against d = sqrt(KL to the start).
std::string reward_vs_kl_chart(const RunSummary& run) {
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::map<std::string, double> first;
  double max_d = 0, min_r = INFINITY, max_r = -INFINITY;
  for (const auto& m : run.metrics) {
    if (!m.contains("kl") || !m["kl"].is_number()) continue;
    const double d = std::sqrt(std::max(0.0, m["kl"].get<double>()));
    for (const auto& [key, value] : m.items())
      if (key.rfind("reward/", 0) == 0 && key != "reward/std" && value.is_number()) {
        if (!first.count(key)) first[key] = value.get<double>();
        const double r = value.get<double>() - first[key];
        series[key].emplace_back(d, r);
        max_d = std::max(max_d, d);
        min_r = std::min(min_r, r);
        max_r = std::max(max_r, r);
      }
  }
  if (series.empty() || max_d <= 0) return "";
  if (max_r == min_r) max_r = min_r + 1;
  const int left = 50, top = 20, width = 420, height = 180;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 160 << "' height='" << top + height + 30
      << "' font-family='sans-serif' font-size='11'><text x='" << left << "' y='12' font-weight='bold'>"
      << html_escape(run.name) << ": reward gained vs sqrt(KL)</text><rect x='" << left << "' y='" << top << "' width='"
      << width << "' height='" << height << "' fill='none' stroke='#999'/>";
  svg << "<text x='" << left - 4 << "' y='" << top + 10 << "' text-anchor='end'>" << fixed(max_r, 2) << "</text>";
  svg << "<text x='" << left - 4 << "' y='" << top + height << "' text-anchor='end'>" << fixed(min_r, 2) << "</text>";
  svg << "<text x='" << left + width << "' y='" << top + height + 14 << "' text-anchor='end'>d = " << fixed(max_d, 3)
      << "</text>";
  int k = 0;
  for (const auto& [name, points] : series) {
    std::string line;
    for (const auto& [d, r] : points)
      line +=
          fixed(left + width * d / max_d, 1) + "," + fixed(top + height * (1 - (r - min_r) / (max_r - min_r)), 1) + " ";
    svg << "<polyline fill='none' stroke='" << kPalette[k % 8] << "' stroke-width='1.5' points='" << line << "'/>";
    svg << "<text x='" << left + width + 8 << "' y='" << top + 12 + 14 * k << "' fill='" << kPalette[k % 8] << "'>"
        << html_escape(name) << "</text>";
    ++k;
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace

void write_report(const std::vector<std::string>& run_dirs, const std::string& out_dir, const std::string& title,
                  const nlohmann::json& controls) {
  std::vector<RunSummary> runs;
  for (const auto& dir : run_dirs) runs.push_back(read_run(dir));
  std::set<std::string> suites;
  std::set<std::string> curve_metrics;
  for (const auto& run : runs) {
    for (const auto& [suite, summary] : run.evals) suites.insert(suite);
    for (const auto& m : run.metrics)
      for (const auto& [key, value] : m.items())
        if (key == "kl" || key.rfind("reward/", 0) == 0 || key == "rewards/margins") curve_metrics.insert(key);
  }
  const auto final_loss = [](const RunSummary& run) {
    double loss = std::nan("");
    for (const auto& m : run.metrics)
      if (m.contains("loss") && m["loss"].is_number()) loss = m["loss"].get<double>();
    return loss;
  };
  const bool checked = controls.is_object();
  const bool controlled = checked && controls.value("controlled", false);
  const std::string verdict = !checked ? "controls not checked (run `posttrain variants` for a matrix)"
                              : controlled
                                  ? "controlled: same base, data, seed and budget; configs differ only in the method"
                                  : "NOT CONTROLLED: see the failed checks below";

  // Markdown.
  std::ostringstream md;
  md << "# " << title << "\n\n" << runs.size() << " runs. Controls: " << verdict << ".\n\n";
  md << "## Scores\n\nEach cell: the suite's primary score [95% bootstrap interval], its worst case over the "
        "prompt perturbations, the consistency of the chosen content, and flags: GAMEABLE when a degenerate "
        "policy beats chance + margin on that suite, CONTAMINATED when its items or canary appear in the "
        "training data.\n\n";
  md << "| run | method | status | steps | final loss |";
  for (const auto& s : suites) md << " " << s << " |";
  md << "\n| --- | --- | --- | --- | --- |";
  for (size_t i = 0; i < suites.size(); ++i) md << " --- |";
  md << "\n";
  for (const auto& run : runs) {
    md << "| " << run.name << " | " << run.method << " | " << run.status << " | "
       << (run.manifest.contains("budget") ? run.manifest["budget"].value("steps", 0) : 0) << " | "
       << fixed(final_loss(run), 4) << " |";
    for (const auto& s : suites) md << " " << cell_text(cell_of(run, s)) << " |";
    md << "\n";
  }
  md << "\nPrimary scores:";
  for (const auto& s : suites) {
    for (const auto& run : runs)
      if (run.evals.count(s)) {
        md << " " << s << " = " << run.evals.at(s).value("primary", "?") << ";";
        break;
      }
  }
  std::ostringstream others_md, others_html;
  for (const auto& suite : suites) {
    const ScoreTable table = other_scores(suite, runs);
    if (table.scores.empty()) continue;
    others_md << "\n### " << suite << "\n\n| run |";
    others_html << "<h3>" << html_escape(suite) << "</h3><table><tr><th>run</th>";
    for (const auto& name : table.scores) {
      others_md << " " << name << " |";
      others_html << "<th>" << html_escape(name) << "</th>";
    }
    others_md << "\n| --- |";
    for (size_t i = 0; i < table.scores.size(); ++i) others_md << " --- |";
    others_md << "\n";
    others_html << "</tr>";
    for (const auto& [run, cells] : table.rows) {
      others_md << "| " << run << " |";
      others_html << "<tr><td>" << html_escape(run) << "</td>";
      for (const auto& cell : cells) {
        others_md << " " << cell << " |";
        others_html << "<td>" << html_escape(cell) << "</td>";
      }
      others_md << "\n";
      others_html << "</tr>";
    }
    others_html << "</table>";
  }
  const char* const others_intro =
      "Every other score a suite reports beside its primary one [95% bootstrap interval] (e.g. refusal's two "
      "errors, which its balanced score averages: a method can trade one for the other).";
  if (!others_md.str().empty()) md << "\n\n## Other scores\n\n" << others_intro << "\n" << others_md.str();

  // Over-optimisation: Gao et al.'s RL form fitted to each reward of each RL run.
  std::ostringstream overopt_md, overopt_html;
  for (const auto& run : runs) {
    const nlohmann::json fits = overoptimization_report(run.metrics);
    for (const auto& [reward, fit] : fits.items()) {
      const bool past = fit["past_peak"].get<bool>();
      const std::string peak = fit["peak_d"].is_number() ? fixed(fit["peak_d"].get<double>()) : "none yet";
      overopt_md << "| " << run.name << " | " << reward << " | " << fixed(fit["a"].get<double>()) << " | "
                 << fixed(fit["b"].get<double>()) << " | " << peak << " | " << fixed(fit["last_d"].get<double>())
                 << " | " << fixed(fit["r2"].get<double>(), 2) << " | " << (past ? "**PAST THE PEAK**" : "no")
                 << " |\n";
      overopt_html << "<tr><td>" << html_escape(run.name) << "</td><td>" << html_escape(reward) << "</td><td>"
                   << fixed(fit["a"].get<double>()) << "</td><td>" << fixed(fit["b"].get<double>()) << "</td><td>"
                   << peak << "</td><td>" << fixed(fit["last_d"].get<double>()) << "</td><td>"
                   << fixed(fit["r2"].get<double>(), 2) << "</td><td" << (past ? " class='bad'>PAST THE PEAK" : ">no")
                   << "</td></tr>";
    }
  }
  if (!overopt_md.str().empty())
    md << "\n\n## Over-optimisation\n\nReward gained since the first step against d = sqrt(KL to the start), "
          "fitted with Gao et al. (2022)'s RL form R(d) = d (a - b ln d); the peak is at d* = exp(a / b - 1). "
          "Past it, pushing the proxy further lowers that reward.\n\n"
          "| run | reward | a | b | peak d* | last d | R^2 | past the peak |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
       << overopt_md.str();
  md << "\n\n## Controls\n\n";
  if (checked) {
    md << "| check | passed |\n| --- | --- |\n";
    for (const auto& c : controls["checks"])
      md << "| " << c["check"].get<std::string>() << " | " << (c["passed"].get<bool>() ? "yes" : "**NO**") << " |\n";
    if (!controls["differences"].empty()) {
      md << "\nDifferences outside the method section:\n\n";
      for (const auto& d : controls["differences"]) {
        md << "- `" << d["key"].get<std::string>() << "`:";
        for (const auto& [run, value] : d["values"].items()) md << " " << run << "=" << value.get<std::string>();
        md << "\n";
      }
    }
  } else {
    md << "Not checked.\n";
  }
  md << "\n## Runs\n\n| run | base sha256 | data sha256 | seed |\n| --- | --- | --- | --- |\n";
  for (const auto& run : runs) {
    const auto& m = run.manifest;
    md << "| " << run.name << " | "
       << (m.contains("base") ? m["base"].value("sha256", "").substr(0, 12) : std::string("-")) << " | "
       << (m.contains("data") ? m["data"].value("sha256", "").substr(0, 12) : std::string("-")) << " | "
       << m.value("seed", 0) << " |\n";
  }

  // HTML: the same tables, plus charts.
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" << html_escape(title)
       << "</title><style>body{font-family:sans-serif;margin:24px;max-width:1200px}"
          "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
          "th{background:#f3f3f3}.bad{color:#b00;font-weight:bold}.ok{color:#070}"
          ".banner{padding:8px 12px;border-radius:4px;margin:8px 0}</style></head><body>";
  html << "<h1>" << html_escape(title) << "</h1>";
  html << "<div class='banner' style='background:" << (controlled ? "#e6f4e6" : "#fbe3e3") << "'>" << runs.size()
       << " runs. Controls: <span class='" << (controlled ? "ok" : "bad") << "'>" << html_escape(verdict)
       << "</span></div>";
  html << "<h2>Scores</h2><table><tr><th>run</th><th>method</th><th>status</th><th>final loss</th>";
  for (const auto& s : suites) html << "<th>" << html_escape(s) << "</th>";
  html << "</tr>";
  for (const auto& run : runs) {
    html << "<tr><td>" << html_escape(run.name) << "</td><td>" << html_escape(run.method) << "</td><td>"
         << html_escape(run.status) << "</td><td>" << fixed(final_loss(run), 4) << "</td>";
    for (const auto& s : suites) {
      const Cell c = cell_of(run, s);
      html << "<td" << (c.gameable || c.contaminated ? " class='bad'" : "") << ">" << html_escape(cell_text(c))
           << "</td>";
    }
    html << "</tr>";
  }
  html << "</table><p>Cells: primary score [95% bootstrap interval], worst case over prompt perturbations, "
          "consistency; GAMEABLE: a degenerate policy beats chance + margin on that suite; CONTAMINATED: "
          "its items or canary appear in the training data.</p>";
  for (const auto& s : suites) {
    std::string primary;
    for (const auto& run : runs)
      if (run.evals.count(s)) primary = run.evals.at(s).value("primary", "");
    html << "<h3>" << html_escape(s) << " (" << html_escape(primary) << ")</h3>" << suite_chart(s, runs);
  }
  if (!others_html.str().empty())
    html << "<h2>Other scores</h2><p>" << html_escape(others_intro) << "</p>" << others_html.str();
  html << "<h2>Training curves</h2>";
  std::set<std::string> methods;
  for (const auto& run : runs) methods.insert(run.method);
  for (const auto& method : methods) html << curve_chart("loss", runs, method);
  for (const auto& metric : curve_metrics)
    if (metric != "loss") html << curve_chart(metric, runs);
  if (!overopt_html.str().empty()) {
    html << "<h2>Over-optimisation</h2><p>Reward gained since the first step against d = sqrt(KL to the start), "
            "fitted with Gao et al. (2022)'s RL form R(d) = d (a - b ln d); the peak is at d* = exp(a / b - 1).</p>"
            "<table><tr><th>run</th><th>reward</th><th>a</th><th>b</th><th>peak d*</th><th>last d</th><th>R^2</th>"
            "<th>past the peak</th></tr>"
         << overopt_html.str() << "</table>";
    for (const auto& run : runs) html << reward_vs_kl_chart(run);
  }
  html << "<h2>Controls</h2>";
  if (checked) {
    html << "<table><tr><th>check</th><th>passed</th></tr>";
    for (const auto& c : controls["checks"])
      html << "<tr><td>" << html_escape(c["check"].get<std::string>()) << "</td><td class='"
           << (c["passed"].get<bool>() ? "ok'>yes" : "bad'>NO") << "</td></tr>";
    html << "</table>";
    if (!controls["differences"].empty()) {
      html << "<p class='bad'>Differences outside the method section:</p><ul>";
      for (const auto& d : controls["differences"]) {
        html << "<li><code>" << html_escape(d["key"].get<std::string>()) << "</code>:";
        for (const auto& [run, value] : d["values"].items())
          html << " " << html_escape(run) << "=" << html_escape(value.get<std::string>());
        html << "</li>";
      }
      html << "</ul>";
    }
  } else {
    html << "<p>Not checked.</p>";
  }
  html << "</body></html>\n";

  fs::create_directories(out_dir);
  write_file_atomic((fs::path(out_dir) / "report.md").string(), md.str());
  write_file_atomic((fs::path(out_dir) / "report.html").string(), html.str());
}

}  // namespace posttrain
