// The report's sections, one file each; each appends its blocks to the document from the input.
#pragma once

#include "report/document.h"
#include "report/runs.h"

namespace posttrain::report {

void add_scores(Document& doc, const ReportInput& in);  // scores.cpp: one row per run, one column per suite
// replicates.cpp: scores over seeds, paired comparisons with Holm, sweeps; returns their JSON (null
// when no run kept per-item scores)
nlohmann::json add_replicates(Document& doc, const ReportInput& in);
void add_other_scores(Document& doc, const ReportInput& in);  // other_scores.cpp: the non-primary scores
void add_curves(Document& doc, const ReportInput& in);  // curves.cpp: training curves (HTML)
void add_overoptimization(Document& doc, const ReportInput& in);  // overoptimization.cpp: Gao et al.'s fits
void add_red_team(Document& doc, const ReportInput& in);  // red_team.cpp: redteam.json, when given
void add_theories(Document& doc, const nlohmann::json& board);  // theories.cpp: theories.json's board
void add_leaderboard(Document& doc, const nlohmann::json& board);  // leaderboard.cpp: a hackathon's board.json
void add_controls(Document& doc, const ReportInput& in);  // controls.cpp: the control checks
void add_run_table(Document& doc, const ReportInput& in);  // run_table.cpp: base / data hashes and seeds

}  // namespace posttrain::report
