// The comparison report over variant runs: report.md and a self-contained report.html (inline SVG,
// no network): scores per run and suite, other scores, training curves, over-optimisation fits, the red
// team, the control checks and the runs' hashes. Each section is a file of this folder (report/sections.h).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// Writes <out_dir>/report.md, <out_dir>/report.html and <out_dir>/report.json (the replicate
// statistics: scores over seeds, comparisons, sweeps). `controls` is check_controls' JSON (null:
// the section says the controls were not checked); `redteam` is redteam.json's content (null: no
// Red team section); `layout` is a matrix's matrix_layout (null: runs are grouped into variants by
// their folder names, and no sweeps are drawn). UserError when a run folder has no manifest.
void write_report(const std::vector<std::string>& run_dirs, const std::string& out_dir, const std::string& title,
                  const nlohmann::json& controls, const nlohmann::json& redteam = nullptr,
                  const nlohmann::json& layout = nullptr);

// Writes theories.json, theories.md and theories.html (the board of `posttrain theory score`) to
// out_dir. A matrix's report gets the same Theories section when its folder holds theories.json.
void write_theories_report(const nlohmann::json& board, const std::string& out_dir);

// Writes leaderboard.html (self-contained) and leaderboard.md to the event folder from board.json's
// content (`posttrain hackathon judge`): the Ladder's private board, the public dev board, details.
void write_leaderboard(const nlohmann::json& board, const std::string& event_dir);

}  // namespace posttrain
