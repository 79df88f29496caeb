// Reading YAML recipes strictly: typed getters that remember which keys were read, so that any key
// left over is reported as unknown with its file, line and the closest known key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace posttrain {

// The YAML tree of a recipe after `defaults:` merging and key=value overrides. Nodes remember the
// file they came from (yaml-cpp marks only carry line/column), see load_recipe_tree.
struct RecipeTree {
  YAML::Node root;
  std::string file;  // the recipe given by the user
  std::vector<std::string> override_paths;  // dotted keys set on the command line
};

// Calls `read` and turns a yaml-cpp exception that escaped the typed getters (a value of an
// unexpected shape read with as<>) into a UserError naming `file` and the line, as every other bad
// input is reported; found by fuzzing the recipe and matrix readers (tests/fuzz).
template <typename F>
auto with_yaml_errors(const std::string& file, F read) -> decltype(read());

// Parses a YAML file; UserError "<path>: <kind> file not found" or "<path>:<line>: malformed YAML: ...".
YAML::Node load_yaml_file(const std::string& path, const std::string& kind);

// Loads `path`, merges the files listed under `defaults:` (relative to it; later wins, the recipe
// itself last), then applies `key.sub=value` overrides (values parsed as YAML scalars / lists).
RecipeTree load_recipe_tree(const std::string& path, const std::vector<std::string>& overrides);

// A typed view of one mapping. Every get() marks its key as known; finish() throws UserError
// naming the first unknown key, its line, and the closest known key.
class YamlSection {
 public:
  // `overrides`: dotted keys set on the command line (reported as such instead of a line number).
  YamlSection(YAML::Node node, std::string path, std::string file, std::vector<std::string> overrides = {});

  bool has(const std::string& key) const;
  template <typename T>
  T get(const std::string& key, const T& fallback);
  template <typename T>
  T require(const std::string& key);
  YamlSection section(const std::string& key);  // a nested mapping (empty if absent)
  YAML::Node raw(const std::string& key);  // for polymorphic values; marks the key known
  void finish() const;

  // "file:line: key.path" for messages about a value.
  std::string where(const std::string& key) const;
  [[noreturn]] void fail_at(const std::string& key, const std::string& what) const;

 private:
  template <typename T>
  T convert(const std::string& key, const YAML::Node& value) const;

  std::string location(const std::string& key, const YAML::Node& node) const;

  YAML::Node node_;
  std::string path_;  // dotted path of this section ("" for the root)
  std::string file_;
  std::vector<std::string> overrides_;
  std::set<std::string> known_;
};

template <typename T>
T YamlSection::convert(const std::string& key, const YAML::Node& value) const {
  T out;
  try {
    out = value.as<T>();
  } catch (const YAML::Exception&) {
    fail_at(key, "has the wrong type (got \"" + YAML::Dump(value) + "\")");
  }
  // .nan and .inf are YAML numbers, but no setting here means them: refuse them where they are read.
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(out)) fail_at(key, "must be a finite number (got " + YAML::Dump(value) + ")");
  return out;
}

template <typename T>
T YamlSection::get(const std::string& key, const T& fallback) {
  known_.insert(key);
  if (!node_ || !node_[key] || node_[key].IsNull()) return fallback;
  return convert<T>(key, node_[key]);
}

template <typename T>
T YamlSection::require(const std::string& key) {
  known_.insert(key);
  if (!node_ || !node_[key] || node_[key].IsNull()) fail_at(key, "is required");
  return convert<T>(key, node_[key]);
}

// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

// A YAML value as JSON, typed as Python's yaml.safe_load types it: unquoted integers, floats and
// booleans (true / false / True / False) become numbers and booleans, ~ / null None, anything quoted
// stays a string; mappings keep their key order.
nlohmann::ordered_json yaml_to_typed_json(const YAML::Node& node);

[[noreturn]] void fail_yaml(const std::string& file, const YAML::Exception& e);

template <typename F>
auto with_yaml_errors(const std::string& file, F read) -> decltype(read()) {
  try {
    return read();
  } catch (const YAML::Exception& e) {
    fail_yaml(file, e);
  }
}

}  // namespace posttrain
