#include "core/yaml_reader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>

#include "core/error.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// Deep merge: mappings merge key by key, anything else in `top` replaces `base`. Values are shared,
// not cloned, so they keep their source marks (line numbers) for error messages.
YAML::Node merge(const YAML::Node& base, const YAML::Node& top) {
  if (!base.IsMap() || !top.IsMap()) return top;
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& item : base) out[item.first.as<std::string>()] = item.second;
  for (const auto& item : top) {
    const std::string key = item.first.as<std::string>();
    if (out[key] && out[key].IsMap() && item.second.IsMap())
      out[key] = merge(out[key], item.second);
    else
      out[key] = item.second;
  }
  return out;
}

YAML::Node load_file(const std::string& path, std::vector<std::string>& chain) {
  if (std::find(chain.begin(), chain.end(), path) != chain.end()) fail(path, "defaults: include cycle");
  YAML::Node node = load_yaml_file(path, "recipe");
  if (node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) fail(path, "a recipe must be a YAML mapping (key: value lines)");
  chain.push_back(path);
  YAML::Node merged(YAML::NodeType::Map);
  if (node["defaults"]) {
    const YAML::Node defaults = node["defaults"];
    if (!defaults.IsSequence())
      fail(path + ":" + std::to_string(defaults.Mark().line + 1), "defaults must be a list of recipe files");
    for (const auto& item : defaults) {
      if (!item.IsScalar())
        fail(path + ":" + std::to_string(item.Mark().line + 1), "defaults must be a list of recipe files");
      const fs::path base = fs::path(path).parent_path() / item.Scalar();
      merged = merge(merged, load_file(base.lexically_normal().string(), chain));
    }
    node.remove("defaults");
  }
  chain.pop_back();
  return merged.size() == 0 ? node : merge(merged, node);
}

}  // namespace

namespace {

// yaml-cpp keeps every repeat of a key in a map, and a lookup finds the first: a second value would
// be dropped in silence. Walks the tree and refuses any repeat at the line it is on.
void refuse_duplicate_keys(const YAML::Node& node, const std::string& path, const std::string& at) {
  if (node.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
      const std::string dotted = at.empty() ? key : at + "." + key;
      if (!seen.insert(key).second)
        fail(path + ":" + std::to_string(kv.first.Mark().line + 1),
             "duplicate key " + dotted + " (each key may appear once; the values would disagree)");
      refuse_duplicate_keys(kv.second, path, dotted);
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) refuse_duplicate_keys(node[i], path, at + "[" + std::to_string(i) + "]");
  }
}

constexpr uintmax_t kMaxYamlBytes = 16u << 20;  // recipes, matrices, tasks: kilobytes, not megabytes

}  // namespace

void fail_yaml(const std::string& file, const YAML::Exception& e) {
  const std::string where = e.mark.is_null() ? file : file + ":" + std::to_string(e.mark.line + 1);
  fail(where, "unexpected YAML here (" + e.msg + "): a list, mapping or value where another was expected");
}

YAML::Node load_yaml_file(const std::string& path, const std::string& kind) {
  if (!fs::exists(path)) fail(path, kind + " file not found");
  if (fs::is_directory(path)) fail(path, "is a folder, not a " + kind + " file");
  std::error_code size_error;
  const uintmax_t bytes = fs::file_size(path, size_error);
  if (!size_error && bytes > kMaxYamlBytes)
    fail(path, "is " + std::to_string(bytes >> 20) + " MiB; a " + kind + " file may be at most " +
                   std::to_string(kMaxYamlBytes >> 20) + " MiB (data belongs in JSONL files it names)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail(path + ":" + std::to_string(e.mark.line + 1), "malformed YAML: " + e.msg);
  }
  refuse_duplicate_keys(root, path, "");
  return root;
}

RecipeTree load_recipe_tree(const std::string& path, const std::vector<std::string>& overrides) {
  RecipeTree tree;
  tree.file = path;
  std::vector<std::string> chain;
  tree.root = load_file(path, chain);
  for (const auto& item : overrides) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError("override \"" + item + "\" is not key.sub=value");
    const std::string key = item.substr(0, eq);
    YAML::Node value;
    try {
      value = YAML::Load(item.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw UserError("override \"" + item + "\": value is not valid YAML: " + e.msg);
    }
    // Walk / create the mappings along the dotted path. yaml-cpp's operator[] returns handles that
    // alias the tree, so assigning through them edits it in place.
    std::vector<std::string> parts;
    for (size_t start = 0; start <= key.size();) {
      size_t dot = key.find('.', start);
      if (dot == std::string::npos) dot = key.size();
      parts.push_back(key.substr(start, dot - start));
      start = dot + 1;
    }
    // A numeric segment indexes an existing list (evals.0.limit=5).
    const auto list_index = [&](const YAML::Node& list, const std::string& part) -> long {
      if (!list.IsSequence() || part.empty() || part.find_first_not_of("0123456789") != std::string::npos) return -1;
      const long index = std::stol(part);
      if (index >= static_cast<long>(list.size()))
        throw UserError("override \"" + item + "\": index " + part + " is past the end of a list of " +
                        std::to_string(list.size()));
      return index;
    };
    YAML::Node node = tree.root;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      if (parts[i].empty()) throw UserError("override \"" + item + "\": empty key segment");
      if (const long index = list_index(node, parts[i]); index >= 0) {
        node.reset(node[static_cast<size_t>(index)]);
        continue;
      }
      if (!node[parts[i]] || !(node[parts[i]].IsMap() || node[parts[i]].IsSequence()))
        node[parts[i]] = YAML::Node(YAML::NodeType::Map);
      node.reset(node[parts[i]]);
    }
    if (const long index = list_index(node, parts.back()); index >= 0) {
      node[static_cast<size_t>(index)] = value;
    } else {
      node[parts.back()] = value;
    }
    tree.override_paths.push_back(key);
  }
  return tree;
}

YamlSection::YamlSection(YAML::Node node, std::string path, std::string file, std::vector<std::string> overrides)
    : node_(std::move(node)), path_(std::move(path)), file_(std::move(file)), overrides_(std::move(overrides)) {
  if (node_ && !node_.IsNull() && !node_.IsMap())
    throw UserError(file_ + ":" + std::to_string(node_.Mark().line + 1) + ": " + (path_.empty() ? "recipe" : path_) +
                    " must be a mapping");
}

bool YamlSection::has(const std::string& key) const { return node_ && node_[key] && !node_[key].IsNull(); }

YamlSection YamlSection::section(const std::string& key) {
  known_.insert(key);
  const std::string path = path_.empty() ? key : path_ + "." + key;
  if (!node_ || !node_[key] || node_[key].IsNull())
    return YamlSection(YAML::Node(YAML::NodeType::Map), path, file_, overrides_);
  return YamlSection(node_[key], path, file_, overrides_);
}

YAML::Node YamlSection::raw(const std::string& key) {
  known_.insert(key);
  return node_ ? node_[key] : YAML::Node();
}

std::string YamlSection::location(const std::string& key, const YAML::Node& node) const {
  const std::string dotted = path_.empty() ? key : path_ + "." + key;
  for (const auto& o : overrides_)
    if (o == dotted || dotted.rfind(o + ".", 0) == 0 || o.rfind(dotted + ".", 0) == 0)
      return file_ + " (command-line override)";
  if (node && node.Mark().line >= 0) return file_ + ":" + std::to_string(node.Mark().line + 1);
  return file_;
}

std::string YamlSection::where(const std::string& key) const {
  const std::string dotted = path_.empty() ? key : path_ + "." + key;
  return location(key, node_ ? node_[key] : YAML::Node()) + ": " + dotted;
}

void YamlSection::fail_at(const std::string& key, const std::string& what) const {
  throw UserError(where(key) + " " + what);
}

void YamlSection::finish() const {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& item : node_) {
    const std::string key = item.first.as<std::string>();
    if (known_.count(key) || item.second.IsNull()) continue;  // `key: null` unsets, whatever the key
    std::string best;
    size_t best_distance = 1000;
    for (const auto& candidate : known_) {
      const size_t d = edit_distance(key, candidate);
      if (d < best_distance) best_distance = d, best = candidate;
    }
    std::string message = "unknown key";
    if (!best.empty() && best_distance <= std::max<size_t>(2, key.size() / 3))
      message += "; did you mean \"" + best + "\"?";
    else {
      message += " (known here:";
      for (const auto& k : known_) message += " " + k;
      message += ")";
    }
    const YAML::Node& marked = item.first.Mark().line >= 0 ? item.first : item.second;
    throw UserError(location(key, marked) + ": " + (path_.empty() ? key : path_ + "." + key) + ": " + message);
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

nlohmann::ordered_json yaml_to_typed_json(const YAML::Node& node) {
  using nlohmann::ordered_json;
  if (!node || node.IsNull()) return nullptr;
  if (node.IsMap()) {
    ordered_json out = ordered_json::object();
    for (const auto& kv : node) out[kv.first.Scalar()] = yaml_to_typed_json(kv.second);
    return out;
  }
  if (node.IsSequence()) {
    ordered_json out = ordered_json::array();
    for (const auto& item : node) out.push_back(yaml_to_typed_json(item));
    return out;
  }
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted: a string as written
  char* end = nullptr;
  errno = 0;
  const long long integer = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0' && errno != ERANGE) return integer;
  const double real = std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0' && std::isfinite(real)) return real;
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  return s;
}

}  // namespace posttrain
