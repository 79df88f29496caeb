#include "report/runs.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/variants.h"

namespace fs = std::filesystem;

namespace posttrain::report {

RunSummary read_run(const std::string& dir) {
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path)) throw UserError(dir + ": not a run folder (no manifest.json)");
  RunSummary run;
  run.name = run_name_of(dir);  // "<variant>/seed-<s>" for a replicate
  run.manifest = nlohmann::json::parse(read_file(manifest_path));
  run.method = run.manifest.value("method", "?");
  run.status = run.manifest.value("status", "?");
  const fs::path evals = fs::path(dir) / "evals";
  if (fs::exists(evals))
    for (const auto& entry : fs::directory_iterator(evals))
      if (entry.path().extension() == ".json")
        run.evals[entry.path().stem().string()] = nlohmann::json::parse(read_file(entry.path().string()));
  std::ifstream in((fs::path(dir) / "metrics.jsonl").string());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) run.metrics.push_back(nlohmann::json::parse(line));
  return run;
}

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

double number_or_nan(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

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

std::string interval_text(const ScoreInterval& s) {
  return fixed(s.value) + " [" + fixed(s.low) + ", " + fixed(s.high) + "]";
}

SuiteCell suite_cell(const RunSummary& run, const std::string& suite) {
  SuiteCell c;
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

std::string suite_cell_text(const SuiteCell& c) {
  if (!c.present) return "-";
  std::string text = interval_text({c.value, c.low, c.high});
  if (std::isfinite(c.worst)) text += " worst " + fixed(c.worst);
  if (std::isfinite(c.consistency)) text += " cons " + fixed(c.consistency, 2);
  if (c.gameable) text += " GAMEABLE";
  if (c.contaminated) text += " CONTAMINATED";
  return text;
}

}  // namespace posttrain::report
