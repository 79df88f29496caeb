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

struct Variant {
  std::string name;  // also the run folder: <output_dir>/<name>
  std::string method;
  std::string recipe_yaml;  // the recipe posttrain runs for it
  std::string data_kind;  // which data file it trains on
};

struct Matrix {
  std::string file;
  std::vector<std::string> plugins;  // absolute paths
  std::string name;  // report title
  std::string output_dir;  // absolute
  std::string base_sha256;  // optional: every run's base must have it
  std::map<std::string, std::string> data_files;  // data kind -> absolute path
  std::vector<Variant> variants;
  YAML::Node evals;  // the evals every variant runs (file options absolute)
  YAML::Node redteam;  // the `redteam:` section as written, read by redteam/matrix.h
};

// Reads and validates the matrix (unknown keys are errors naming file, line and key; a variant may
// hold only name, method, the method's own section and `overrides`). `load_plugins` is called with
// the matrix's plugins before any method is looked up; `data_kind_of(method)` gives the kind of data
// a method trains on ("" for an unknown method, which is an error).
// `overrides` ("key.sub=value", numeric segments index lists: variants.2.grpo.max_new_tokens=8) are
// applied to the matrix before it is read, as `posttrain run` applies them to a recipe; an overridden
// base or data file is relative to the working directory.
Matrix parse_matrix(const std::string& path, const std::function<void(const std::vector<std::string>&)>& load_plugins,
                    const std::function<std::string(const std::string&)>& data_kind_of,
                    const std::vector<std::string>& overrides = {});

// The control checks over run directories of one matrix (`matrix` may be null: then only the
// checks that need no matrix). JSON: {"controlled": bool, "checks": [{"check", "passed", "detail"}],
// "differences": [{"key", "values": {run: value}}]}. Keys outside the method section that differ
// between runs are differences (output_dir and data.train, which follow from the variant, are not).
nlohmann::json check_controls(const std::vector<std::string>& run_dirs, const Matrix* matrix);

}  // namespace posttrain
