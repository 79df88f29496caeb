// The theory ledger's operations and the board: register a theory as a salted commitment, reveal
// it, review it, and score every revealed theory against the variants' runs (docs/theories.md).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "theories/theory.h"

namespace posttrain {

// sha256(salt + "\n" + canonical_theory): what a registration commits to.
std::string theory_commitment(const Theory& theory, const std::string& salt);

// Appends a registration: the theory's id, its commitment, the matrix file's sha256, the number of
// predictions and assumptions, and `post_hoc` (true when a variant it names already has a completed
// run under the matrix's output_dir, listed in `completed_runs`). UserError if the id is already
// registered. Returns the ledger entry.
nlohmann::json register_theory(const Theory& theory, const std::string& ledger, const std::string& salt);

// Appends the theory's canonical text and salt; UserError naming the registration's line when they
// do not match its commitment (the file changed since it was registered, or the wrong salt).
nlohmann::json reveal_theory(const Theory& theory, const std::string& ledger, const std::string& salt);

// Appends a review of a registered theory: reviewer and integer scores 1..5 per criterion.
nlohmann::json review_theory(const std::string& ledger, const std::string& theory_id, const std::string& reviewer,
                             const std::map<std::string, int>& scores);

// Scores every revealed theory of the ledger against the runs of its matrix in `runs_dir` (a matrix
// output folder: <variant>/ or <variant>/seed-<s>/ run folders). A metric is an eval suite (its
// per-item scores) or "log:<key>" (the last value of <key> in each run's metrics.jsonl: one number
// per seed). How an outcome is decided:
//  compare: the paired difference's 95% interval (seeds, then items) above 0: happened; at or
//    below 0 (high <= 0: equal in every resample counts as not better): did not; else "undetermined";
//  interval: the variant's (or difference's) 95% interval inside [low, high]: happened; disjoint:
//    did not; overlapping a bound: "undetermined";
//  ranking: Kendall's tau between the predicted order and the order of the means over seeds;
//  a variant with no runs (a new method the matrix does not hold yet), or a new_variant that ran
//  with another method or options: "unresolved".
// Each binary forecast is also scored against a reference forecaster that knows only the metric's
// range (0.5 for a compare; the interval's share of the range of values the mean can take), and
// undetermined / unresolved forecasts score exactly what the reference does. The Pareto front is
// peer_vs_uniform against the number of assumptions, over theories registered before the runs with
// at least `min_resolved` decided forecasts.
// JSON: {"theories": [...], "pareto_front": [ids], ...} (docs/theories.md lists every field).
nlohmann::json score_theories(const std::string& ledger, const std::string& runs_dir, int min_resolved = 3);

}  // namespace posttrain
