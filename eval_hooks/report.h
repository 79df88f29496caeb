// The comparison report over variant runs: report.md and a self-contained report.html (inline SVG,
// no network), one row per run and one column per eval suite (primary score with its 95% interval,
// worst case over perturbations, consistency, audit and contamination flags), training curves, RL
// reward / KL curves, and the control checks.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// Writes <out_dir>/report.md and <out_dir>/report.html. `controls` is check_controls' JSON (null:
// the section says the controls were not checked). UserError when a run folder has no manifest.
void write_report(const std::vector<std::string>& run_dirs, const std::string& out_dir, const std::string& title,
                  const nlohmann::json& controls);

}  // namespace posttrain
