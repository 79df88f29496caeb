// Variant matrices: one base, one data spec, one seed, one budget, shared evals, and variants that
// differ only in `method` and its options. Expands a matrix into one recipe per variant, and checks
// the controls on the finished run directories (same base hash, data hashes, seed and budget;
// resolved recipes that differ only in the method section).
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// One run of a matrix: a variant at one seed.
struct Variant {
  std::string name;  // the variant, as the matrix names it (a sweep point: <name>-<option>-<value>)
  std::string run_name;  // its run folder under output_dir: `name`, or `name/seed-S` when the matrix has seeds:
  uint64_t seed = 0;
  std::string method;
  std::string recipe_yaml;  // the recipe posttrain runs for it
  std::string data_kind;  // which data file it trains on
  // A sweep's point: the variant the sweep is on, the option it varies (dpo.beta) and this value.
  std::string sweep_of, sweep_key, sweep_value;
};

struct Matrix {
  std::string file;
  std::vector<std::string> plugins;  // absolute paths
  std::string name;  // report title
  std::string output_dir;  // absolute
  std::string base_sha256;  // optional: every run's base must have it
  std::map<std::string, std::string> data_files;  // data kind -> absolute path
  std::vector<uint64_t> seeds;  // `seeds: [...]` (replicates), or the one `seed:`
  bool replicated = false;  // seeds: given: every variant runs once per seed, in <name>/seed-<s>/
  std::vector<Variant> variants;  // variant-major: every seed of the first variant, then the next
  YAML::Node evals;  // the evals every variant runs (file options absolute)
  YAML::Node redteam;  // the `redteam:` section as written, read by redteam/matrix.h
};

// Reads and validates the matrix (unknown keys are errors naming file, line and key; a variant may
// hold only name, method, the method's own section, `overrides` and `sweep`). `seeds: [0, 1, 2]`
// runs every variant once per seed (the base stays the same weights; the seed moves data order,
// sampling and new heads); "${seed}" in a variant's method options is replaced by its seed (e.g.
// `model: "${output_dir}/reward/seed-${seed}/final"`, the same seed's reward model). `sweep:
// {dpo.beta: [0.03, 0.1]}` expands a variant into one variant per value of one of its method's
// options, named <name>-<option>-<value>. `load_plugins` is called with
// the matrix's plugins before any method is looked up; `data_kind_of(method)` gives the kind of data
// a method trains on ("" for an unknown method, which is an error).
// `overrides` ("key.sub=value", numeric segments index lists: variants.2.grpo.max_new_tokens=8) are
// applied to the matrix before it is read, as `posttrain run` applies them to a recipe; an overridden
// base or data file is relative to the working directory.
Matrix parse_matrix(const std::string& path, const std::function<void(const std::vector<std::string>&)>& load_plugins,
                    const std::function<std::string(const std::string&)>& data_kind_of,
                    const std::vector<std::string>& overrides = {});

// The matrix's runs as JSON, written beside them (matrix.json) for the report: per run its folder
// (run), variant, method, seed and sweep point.
nlohmann::json matrix_layout(const Matrix& matrix);

// The run folders of a matrix's output folder (those holding a manifest.json): <variant>/ and
// <variant>/seed-<s>/, in the order of the folder's matrix.json when it has one (else sorted).
std::vector<std::string> matrix_run_dirs(const std::string& output_dir);

// The run's name in a matrix folder: "<variant>/seed-<s>" for a replicate's folder, else the folder's name.
std::string run_name_of(const std::string& run_dir);

// The control checks over run directories of one matrix (`matrix` may be null: then only the
// checks that need no matrix). JSON: {"controlled": bool, "checks": [{"check", "passed", "detail"}],
// "differences": [{"key", "values": {run: value}}]}. Keys outside the method section that differ
// between runs are differences (output_dir and data.train, which follow from the variant, are not).
// Runs of several seeds (replicates) are checked seed by seed as above ("seed S: same base", ...),
// and the replicates of each variant must differ in nothing but the seed ("replicates of V differ
// only in the seed"; its differences carry "variant").
nlohmann::json check_controls(const std::vector<std::string>& run_dirs, const Matrix* matrix);

}  // namespace posttrain
