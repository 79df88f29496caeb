// The `redteam:` section of a variant matrix: after the variants have run, attack every suite of the
// matrix's `evals:` that the attacks given can attack (choice_dpo: those that score log-likelihoods;
// the others: those that score responses), on the base, on every variant, or on both, into
// <output_dir>/redteam/ (redteam.json, whose Red team section the report then shows):
//   redteam:
//     attacks: [canned, {name: prefix_search, position: prefix}, {name: best_of_n, temperature: 0.7}]
//     on: base            # base | variants | all
//     steps: 30           # budget (0 or absent: each attack's default); also samples, seconds
//     seed: 0
//     margin: 0.1
//     gold_items: ../data/eval_prompts.jsonl   # relative to the matrix
#pragma once

#include <string>
#include <vector>

#include "core/variants.h"
#include "redteam/redteam.h"

namespace posttrain {

struct MatrixRedteam {
  RedteamSpec spec;  // everything but the policies
  std::string on = "base";
  std::vector<std::string> skipped;  // "suite: why" for evals entries that no attack here can use
};

// Reads and validates the section (unknown keys, attacks and their options, the suites) before any
// variant trains; UserError naming the matrix file, line and key. Empty `spec.attacks`: no section.
MatrixRedteam read_matrix_redteam(const Matrix& matrix);

// Runs it on the policies `on` names: the base (from the runs' manifests) and / or each run's final/.
nlohmann::json run_matrix_redteam(MatrixRedteam plan, const std::vector<std::string>& run_dirs);

}  // namespace posttrain
