// What the report reads from each run folder (manifest.json, evals/*.json, metrics.jsonl) and the
// small readers of a suite's summary that several sections share.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::report {

struct RunSummary {
  std::string name, method, status;
  nlohmann::json manifest;
  std::map<std::string, nlohmann::json> evals;  // suite -> after_run summary
  std::vector<nlohmann::json> metrics;  // metrics.jsonl lines
};

// UserError when the folder has no manifest.json.
RunSummary read_run(const std::string& dir);

// What every section is built from.
struct ReportInput {
  std::vector<RunSummary> runs;
  nlohmann::json controls;  // check_controls' JSON, or null when not checked
  nlohmann::json redteam;  // redteam.json beside the runs, or null
  nlohmann::json layout;  // a matrix's matrix.json (its runs' variants, seeds, sweeps), or null
};

std::string fixed(double v, int digits = 3);  // "-" for a non-finite number
double number_or_nan(const nlohmann::json& v);

// One score of a suite's summary: {"value", "ci95": [low, high]}; missing numbers are NaN.
struct ScoreInterval {
  double value = std::nan(""), low = std::nan(""), high = std::nan("");
};
ScoreInterval interval_of(const nlohmann::json& score);
std::string interval_text(const ScoreInterval& s);  // "value [low, high]" to 3 decimals

// The cell of one suite for one run: primary score, interval, worst case, consistency, flags.
struct SuiteCell {
  bool present = false;
  std::string primary;
  double value = std::nan(""), low = std::nan(""), high = std::nan(""), worst = std::nan(""),
         consistency = std::nan("");
  bool gameable = false, contaminated = false;
  double chance = std::nan(""), threshold = std::nan("");
};
SuiteCell suite_cell(const RunSummary& run, const std::string& suite);
std::string suite_cell_text(const SuiteCell& c);

}  // namespace posttrain::report
