// A theory: a YAML file with its statement, the assumptions it rests on (ids from a registry shared
// by every theory, so that counts compare), and probabilistic predictions about named variants of
// one variant matrix, made before the runs exist (docs/theories.md).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// One prediction. kind:
//  "compare":  P(mean metric[better] > mean metric[worse]) = probability;
//  "interval": P(low <= mean metric[variant] (- mean metric[minus]) <= high) = probability;
//  "ranking":  the variants in `order`, best first, by the metric (scored by Kendall's tau).
// `new_variant` (optional): the variant entry of a method the theory proposes; the prediction
// resolves once the matrix holds a variant of that name with that entry.
struct Prediction {
  std::string id, kind, metric;
  std::string better, worse;  // compare
  std::string variant, minus;  // interval (minus: "" for a score, a variant for a difference)
  double low = 0, high = 0;  // interval
  std::vector<std::string> order;  // ranking
  double probability = 0.5;  // compare, interval
  nlohmann::json new_variant;  // null, or {name, method, <method>: {...}}
};

struct Theory {
  std::string file;  // where it was read from
  std::string id, title, statement;
  std::vector<std::string> authors;
  std::string matrix;  // the matrix it predicts, as written (relative to the theory file)
  std::string matrix_file;  // the same, resolved (absolute); not part of the canonical form
  std::vector<std::string> assumptions;  // ids in the registry
  std::vector<Prediction> predictions;
};

// The assumptions registry: a YAML list of {id, statement}. UserError naming file:line for a bad one.
std::vector<std::pair<std::string, std::string>> read_assumptions(const std::string& path);

// Reads and validates a theory (unknown keys, wrong types, a probability outside (0, 1), an unknown
// assumption id, a variant the matrix does not have and no new_variant declares, a metric that is
// not one of the matrix's eval suites, a ranking with repeats: UserError naming file:line and key).
Theory read_theory(const std::string& path, const std::string& assumptions_path);

// The theory as canonical JSON (every field, keys sorted): what a commitment hashes and a reveal
// publishes; read_theory of the same file always gives the same text.
std::string canonical_theory(const Theory& theory);
Theory theory_from_canonical(const nlohmann::json& canonical);

// The variants a theory names (in any prediction).
std::vector<std::string> named_variants(const Theory& theory);

}  // namespace posttrain
