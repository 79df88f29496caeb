#include "core/variants.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/recipe.h"
#include "core/yaml_reader.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

const char* const kDataKinds[] = {"sft", "preference", "unpaired", "prompts"};

// evals entries with their file options (and YAML task files) made absolute.
YAML::Node resolve_evals(const YAML::Node& evals, const std::string& matrix_file) {
  YAML::Node out = YAML::Clone(evals);
  if (!out.IsSequence()) return out;
  for (auto entry : out) {
    if (!entry.IsMap()) continue;
    for (const char* key : {"data", "reference", "reward_model"})
      if (entry[key] && entry[key].IsScalar())
        entry[key] = resolve_recipe_path(matrix_file, entry[key].as<std::string>());
    if (entry["suite"] && entry["suite"].IsScalar()) {
      const std::string suite = entry["suite"].as<std::string>();
      const auto ext = fs::path(suite).extension();
      if (ext == ".yaml" || ext == ".yml") entry["suite"] = resolve_recipe_path(matrix_file, suite);
    }
  }
  return out;
}

// "a.b=value" set in a YAML tree (maps created as needed, numeric segments index lists).
void apply_override(YAML::Node root, const std::string& item, const std::string& where) {
  const size_t eq = item.find('=');
  if (eq == std::string::npos || eq == 0) fail(where, "override \"" + item + "\" is not key.sub=value");
  std::vector<std::string> parts;
  const std::string key = item.substr(0, eq);
  for (size_t start = 0; start <= key.size();) {
    size_t dot = key.find('.', start);
    if (dot == std::string::npos) dot = key.size();
    parts.push_back(key.substr(start, dot - start));
    start = dot + 1;
  }
  YAML::Node value = YAML::Load(item.substr(eq + 1));
  YAML::Node node = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (node.IsSequence() && parts[i].find_first_not_of("0123456789") == std::string::npos) {
      node.reset(node[static_cast<size_t>(std::stoul(parts[i]))]);
      continue;
    }
    if (!node[parts[i]] || !(node[parts[i]].IsMap() || node[parts[i]].IsSequence()))
      node[parts[i]] = YAML::Node(YAML::NodeType::Map);
    node.reset(node[parts[i]]);
  }
  node[parts.back()] = value;
}

// Every scalar of a YAML tree under its dotted path (list items by index).
void flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node)
      flatten(kv.second, prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>(), out);
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) flatten(node[i], prefix + "." + std::to_string(i), out);
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else {
    out[prefix] = "null";
  }
}

// Every scalar of `node` (in place) with `from` replaced by `to`.
YAML::Node replace_in_scalars(YAML::Node node, const std::string& from, const std::string& to) {
  if (node.IsScalar()) {
    std::string text = node.Scalar();
    bool changed = false;
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
      changed = true;
    }
    if (changed) node = text;
  } else if (node.IsMap()) {
    for (auto kv : node) replace_in_scalars(kv.second, from, to);
  } else if (node.IsSequence()) {
    for (auto item : node) replace_in_scalars(item, from, to);
  }
  return node;
}

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace

namespace {

Matrix parse_matrix_checked(const std::string& path,
                            const std::function<void(const std::vector<std::string>&)>& load_plugins,
                            const std::function<std::string(const std::string&)>& data_kind_of,
                            const std::vector<std::string>& overrides) {
  const YAML::Node root = load_yaml_file(path, "matrix");
  std::set<std::string> overridden;  // their paths are relative to the working directory, as for recipes
  for (const auto& o : overrides) {
    apply_override(root, o, "command line");
    overridden.insert(o.substr(0, o.find('=')));
  }
  const auto resolve = [&](const std::string& key, const std::string& value) {
    return resolve_setting_path(path, value, overridden.count(key) > 0);
  };
  YamlSection top(root, "", path);
  Matrix m;
  m.file = path;
  const std::string stem = fs::path(path).stem().string();
  m.name = top.get<std::string>("name", stem);
  // Relative to the matrix file, like every path in it (to the current directory when overridden).
  const std::string output_dir = top.get<std::string>("output_dir", "");
  m.output_dir =
      fs::absolute(output_dir.empty() ? "runs/" + stem : resolve("output_dir", output_dir)).lexically_normal().string();
  m.base_sha256 = top.get<std::string>("base_sha256", "");
  for (const auto& plugin : top.get<std::vector<std::string>>("plugins", {}))
    m.plugins.push_back(resolve_recipe_path(path, plugin));
  load_plugins(m.plugins);

  YAML::Node base = YAML::Clone(top.raw("base"));
  if (!base || base.IsNull()) top.fail_at("base", "is required (a HF model folder or {preset: tiny, seed: 0})");
  if (base.IsScalar()) base = YAML::Node(resolve("base", base.as<std::string>()));
  if (top.has("seed") && top.has("seeds"))
    top.fail_at("seeds", "give seed: (one run per variant) or seeds: (replicates), not both");
  m.replicated = top.has("seeds");
  m.seeds =
      m.replicated ? top.get<std::vector<uint64_t>>("seeds", {}) : std::vector<uint64_t>{top.get<uint64_t>("seed", 0)};
  if (m.seeds.empty()) top.fail_at("seeds", "must list at least one seed");
  if (std::set<uint64_t>(m.seeds.begin(), m.seeds.end()).size() != m.seeds.size())
    top.fail_at("seeds", "lists a seed twice (each replicate needs its own seed)");

  // The data spec: a file per data kind, and the settings every variant shares.
  YamlSection data = top.section("data");
  YAML::Node shared_data(YAML::NodeType::Map);
  for (const char* kind : kDataKinds) {
    const std::string file = data.get<std::string>(kind, "");
    if (!file.empty()) m.data_files[kind] = resolve(std::string("data.") + kind, file);
  }
  for (const char* key : {"format", "max_length", "skip_bad_records", "pack"}) {
    YAML::Node value = data.raw(key);
    if (value && !value.IsNull()) shared_data[key] = YAML::Clone(value);
  }
  data.finish();
  if (m.data_files.empty()) top.fail_at("data", "names no data file (keys: sft, preference, unpaired, prompts)");

  const YAML::Node train = YAML::Clone(top.raw("train"));
  const YAML::Node checkpoint = YAML::Clone(top.raw("checkpoint"));
  const YAML::Node lora = YAML::Clone(top.raw("lora"));  // shared training setup, like train:
  const YAML::Node evals = resolve_evals(top.raw("evals"), path);
  m.evals = evals;
  m.redteam = top.raw("redteam");  // not cloned: its messages keep their line numbers
  const YAML::Node variants = top.raw("variants");
  if (!variants || !variants.IsSequence() || variants.size() == 0)
    top.fail_at("variants", "must be a non-empty list of {name, method, <method options>}");

  std::set<std::string> names;
  for (size_t i = 0; i < variants.size(); ++i) {
    const std::string where = "variants[" + std::to_string(i) + "]";
    YamlSection v(variants[i], where, path);
    const std::string name = v.require<std::string>("name");
    const std::string method = v.require<std::string>("method");
    if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != std::string::npos)
      v.fail_at("name", "must be letters, digits, '_', '.' or '-' (it names the run folder)");
    const std::string data_kind = data_kind_of(method);
    if (data_kind.empty()) v.fail_at("method", "\"" + method + "\" is not a registered method");
    if (!m.data_files.count(data_kind))
      v.fail_at("method", method + " trains on " + data_kind + " data: add data." + data_kind + " to the matrix");
    const YAML::Node options = v.raw(method);
    const auto overrides = v.get<std::vector<std::string>>("overrides", {});
    // A sweep: one option of the method's own section over a list of values.
    std::string sweep_key;
    std::vector<YAML::Node> sweep_values{YAML::Node()};  // one point, no value, without a sweep
    if (v.has("sweep")) {
      const YAML::Node sweep = v.raw("sweep");
      if (!sweep.IsMap() || sweep.size() != 1 || !sweep.begin()->second.IsSequence() ||
          sweep.begin()->second.size() == 0)
        v.fail_at("sweep", "must be one option and its values, e.g. sweep: {" + method + ".beta: [0.03, 0.1, 0.3]}");
      sweep_key = sweep.begin()->first.as<std::string>();
      if (sweep_key.rfind(method + ".", 0) != 0 || sweep_key.size() == method.size() + 1)
        v.fail_at("sweep", "varies " + sweep_key + ": a sweep varies an option of the method's own section (" + method +
                               ".<option>), so that everything else stays controlled");
      sweep_values.clear();
      for (const auto& value : sweep.begin()->second) {
        if (!value.IsScalar()) v.fail_at("sweep", "values must be numbers or words");
        sweep_values.push_back(value);
      }
    }
    v.finish();

    for (const auto& sweep_value : sweep_values) {
      Variant point;
      point.name = name;
      point.method = method;
      point.data_kind = data_kind;
      if (!sweep_key.empty()) {
        point.sweep_of = name;
        point.sweep_key = sweep_key;
        point.sweep_value = sweep_value.Scalar();
        point.name = name + "-" + sweep_key.substr(sweep_key.rfind('.') + 1) + "-" + point.sweep_value;
        if (point.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != std::string::npos)
          v.fail_at("sweep", "value \"" + point.sweep_value + "\" cannot name a run folder (" + point.name + ")");
      }
      if (!names.insert(point.name).second) v.fail_at("name", "\"" + point.name + "\" is used twice");
      for (const uint64_t seed : m.seeds) {
        Variant run = point;
        run.seed = seed;
        run.run_name = m.replicated ? point.name + "/seed-" + std::to_string(seed) : point.name;
        YAML::Node recipe(YAML::NodeType::Map);
        recipe["method"] = method;
        recipe["seed"] = seed;
        recipe["base"] = YAML::Clone(base);
        if (!m.plugins.empty()) recipe["plugins"] = m.plugins;
        YAML::Node recipe_data = YAML::Clone(shared_data);
        recipe_data["train"] = m.data_files[data_kind];
        recipe["data"] = recipe_data;
        if (train && !train.IsNull()) recipe["train"] = YAML::Clone(train);
        if (lora && !lora.IsNull()) recipe["lora"] = YAML::Clone(lora);
        if (checkpoint && !checkpoint.IsNull()) recipe["checkpoint"] = YAML::Clone(checkpoint);
        if (evals && !evals.IsNull()) recipe["evals"] = YAML::Clone(evals);
        recipe["output_dir"] = (fs::path(m.output_dir) / run.run_name).string();
        if (options && !options.IsNull()) {
          // A copy per run: "${seed}" becomes this run's seed (the recipe is written out as text, so
          // the copy's lost line numbers do not matter).
          YAML::Node own = replace_in_scalars(YAML::Clone(options), "${seed}", std::to_string(seed));
          recipe[method] = resolve_method_paths(own, path, m.output_dir);
        }
        for (const auto& o : overrides) apply_override(recipe, o, path + ": " + where + ".overrides");
        if (!sweep_key.empty())
          apply_override(recipe, sweep_key + "=" + YAML::Dump(sweep_value), path + ": " + where + ".sweep");
        run.recipe_yaml = "# " + run.run_name + " of matrix " + fs::absolute(path).string() +
                          " (generated: edit the matrix, not this file)\n" + YAML::Dump(recipe) + "\n";
        m.variants.push_back(run);
      }
    }
  }
  top.finish();
  return m;
}

}  // namespace

Matrix parse_matrix(const std::string& path, const std::function<void(const std::vector<std::string>&)>& load_plugins,
                    const std::function<std::string(const std::string&)>& data_kind_of,
                    const std::vector<std::string>& overrides) {
  return with_yaml_errors(path, [&] { return parse_matrix_checked(path, load_plugins, data_kind_of, overrides); });
}

nlohmann::json matrix_layout(const Matrix& matrix) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& v : matrix.variants) {
    nlohmann::json run = {{"run", v.run_name}, {"variant", v.name}, {"method", v.method}, {"seed", v.seed}};
    if (!v.sweep_key.empty()) run["sweep"] = {{"of", v.sweep_of}, {"key", v.sweep_key}, {"value", v.sweep_value}};
    runs.push_back(run);
  }
  return {{"name", matrix.name}, {"seeds", matrix.seeds}, {"replicated", matrix.replicated}, {"runs", runs}};
}

std::vector<std::string> matrix_run_dirs(const std::string& output_dir) {
  std::vector<std::string> runs;
  if (!fs::is_directory(output_dir)) return runs;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    if (!entry.is_directory()) continue;
    if (fs::exists(entry.path() / "manifest.json")) runs.push_back(entry.path().string());
    for (const auto& replicate : fs::directory_iterator(entry.path()))
      if (replicate.path().filename().string().rfind("seed-", 0) == 0 && fs::exists(replicate.path() / "manifest.json"))
        runs.push_back(replicate.path().string());
  }
  std::sort(runs.begin(), runs.end());
  // The matrix's own order (variants as the matrix lists them, seeds as given) when its matrix.json
  // is there, rather than the alphabet (which puts seed-10 before seed-2); unlisted runs go last.
  const fs::path layout_file = fs::path(output_dir) / "matrix.json";
  if (!fs::exists(layout_file)) return runs;
  std::map<std::string, size_t> position;
  try {
    const nlohmann::json layout = nlohmann::json::parse(read_file(layout_file.string()));
    for (const auto& r : layout.value("runs", nlohmann::json::array()))
      if (r.is_object() && r.contains("run") && r["run"].is_string())
        position.emplace(r["run"].get<std::string>(), position.size());
  } catch (const nlohmann::json::exception& e) {
    throw UserError(layout_file.string() + ": not valid JSON: " + e.what());
  }
  std::stable_sort(runs.begin(), runs.end(), [&](const std::string& a, const std::string& b) {
    const auto pa = position.find(run_name_of(a)), pb = position.find(run_name_of(b));
    const size_t ia = pa == position.end() ? position.size() : pa->second;
    const size_t ib = pb == position.end() ? position.size() : pb->second;
    return ia < ib;
  });
  return runs;
}

std::string run_name_of(const std::string& run_dir) {
  const fs::path p = fs::path(run_dir).lexically_normal();
  const fs::path dir = p.filename().empty() ? p.parent_path() : p;
  const std::string leaf = dir.filename().string();
  if (leaf.rfind("seed-", 0) == 0 && dir.has_parent_path()) return dir.parent_path().filename().string() + "/" + leaf;
  return leaf;
}

nlohmann::json check_controls(const std::vector<std::string>& run_dirs, const Matrix* matrix) {
  nlohmann::json checks = nlohmann::json::array(), differences = nlohmann::json::array();
  const auto add = [&](const std::string& check, bool passed, const nlohmann::json& detail) {
    checks.push_back({{"check", check}, {"passed", passed}, {"detail", detail}});
  };
  std::map<std::string, nlohmann::json> manifests;
  std::map<std::string, std::map<std::string, std::string>> configs;  // outside the method section
  std::map<std::string, std::map<std::string, std::string>> whole_configs;  // all of it
  std::vector<std::string> names;
  nlohmann::json status = nlohmann::json::object();
  bool all_complete = true;
  for (const auto& dir : run_dirs) {
    const std::string name = run_name_of(dir);
    names.push_back(name);
    manifests[name] = read_json_file((fs::path(dir) / "manifest.json").string());
    const std::string s = manifests[name].is_object() ? manifests[name].value("status", "unknown") : "missing";
    status[name] = s;
    all_complete = all_complete && s == "completed";
    std::map<std::string, std::string> flat;
    try {
      const YAML::Node resolved = YAML::LoadFile((fs::path(dir) / "recipe.resolved.yaml").string());
      const std::string method = resolved["method"] ? resolved["method"].as<std::string>() : "";
      flatten(resolved, "", flat);
      whole_configs[name] = flat;
      // What follows from the variant itself: its method and options, its folder, its data file.
      for (auto it = flat.begin(); it != flat.end();) {
        const std::string& key = it->first;
        const bool own = key == "method" || key == "output_dir" || key == "data.train" || key == method ||
                         key.rfind(method + ".", 0) == 0;
        it = own ? flat.erase(it) : std::next(it);
      }
    } catch (const YAML::Exception&) {
      flat["recipe.resolved.yaml"] = "unreadable";
      whole_configs[name] = flat;
    }
    configs[name] = flat;
  }
  add("runs completed", all_complete, status);

  const auto at = [](const nlohmann::json& j, const std::vector<std::string>& keys) {
    nlohmann::json v = j;
    for (const auto& k : keys) v = v.is_object() && v.contains(k) ? v[k] : nlohmann::json(nullptr);
    return v;
  };
  // Values of one manifest field per run of `group`; passes when all are equal (and equal `expected`).
  const auto same = [&](const std::vector<std::string>& group, const std::string& check,
                        const std::function<nlohmann::json(const nlohmann::json&)>& field,
                        const nlohmann::json& expected = nullptr) {
    nlohmann::json values = nlohmann::json::object();
    std::set<std::string> distinct;
    for (const auto& name : group) {
      const nlohmann::json v = manifests[name].is_object() ? field(manifests[name]) : nlohmann::json(nullptr);
      values[name] = v;
      distinct.insert(v.dump());
    }
    bool passed = distinct.size() <= 1;
    if (!expected.is_null()) passed = passed && (distinct.empty() || *distinct.begin() == expected.dump());
    nlohmann::json detail = {{"values", values}};
    if (!expected.is_null()) detail["expected"] = expected;
    add(check, passed, detail);
  };
  // The keys of `flats` (over `group`) whose values differ between its runs.
  const auto differing = [&](const std::vector<std::string>& group,
                             std::map<std::string, std::map<std::string, std::string>>& flats,
                             const std::set<std::string>& ignored) {
    std::set<std::string> keys;
    for (const auto& name : group)
      for (const auto& [key, value] : flats[name]) keys.insert(key);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& key : keys) {
      if (ignored.count(key)) continue;
      nlohmann::json values = nlohmann::json::object();
      std::set<std::string> distinct;
      for (const auto& name : group) {
        const auto it = flats[name].find(key);
        const std::string v = it == flats[name].end() ? "(absent)" : it->second;
        values[name] = v;
        distinct.insert(v);
      }
      if (distinct.size() > 1) out.push_back({{"key", key}, {"values", values}});
    }
    return out;
  };

  // The runs of one seed: same base, seed, budget and data; configs differ only in the method.
  std::map<std::string, std::vector<std::string>> by_seed;  // seed (as JSON text) -> runs
  for (const auto& name : names) by_seed[at(manifests[name], {"seed"}).dump()].push_back(name);
  const bool replicated = by_seed.size() > 1;
  for (const auto& [seed, group] : by_seed) {
    const std::string prefix = replicated ? "seed " + seed + ": " : "";
    same(
        group, prefix + "same base",
        [&](const nlohmann::json& m) {
          return at(m, {"base", "sha256"});
        },
        matrix != nullptr && !matrix->base_sha256.empty() ? nlohmann::json(matrix->base_sha256)
                                                          : nlohmann::json(nullptr));
    if (!replicated) same(group, "same seed", [&](const nlohmann::json& m) { return at(m, {"seed"}); });
    same(group, prefix + "same budget", [&](const nlohmann::json& m) { return at(m, {"budget"}); });

    // Data: each run trained on its kind's file of the spec, byte for byte (sha256).
    nlohmann::json data_detail = nlohmann::json::object();
    bool data_ok = true;
    std::map<std::string, std::string> spec_hash;  // path -> sha256
    if (matrix != nullptr)
      for (const auto& [kind, file] : matrix->data_files)
        spec_hash[file] = fs::exists(file) ? sha256_file(file) : "missing";
    std::map<std::string, std::set<std::string>> hashes_by_path;
    for (const auto& name : group) {
      const nlohmann::json path = at(manifests[name], {"data", "train"}),
                           hash = at(manifests[name], {"data", "sha256"});
      data_detail[name] = {{"train", path}, {"sha256", hash}};
      if (!path.is_string() || !hash.is_string()) {
        data_ok = false;
        continue;
      }
      hashes_by_path[path.get<std::string>()].insert(hash.get<std::string>());
      if (matrix != nullptr) {
        const auto it = spec_hash.find(path.get<std::string>());
        if (it == spec_hash.end() || it->second != hash.get<std::string>()) data_ok = false;
      }
    }
    for (const auto& [path, hashes] : hashes_by_path) data_ok = data_ok && hashes.size() == 1;
    add(prefix + "same data", data_ok, data_detail);

    nlohmann::json found = differing(group, configs, {});
    for (auto& d : found) {
      if (replicated) d["seed"] = nlohmann::json::parse(seed);
      differences.push_back(d);
    }
    add(prefix + "configs differ only in the method section", found.empty(), {{"differing_keys", found.size()}});
  }

  // Replicates: the runs of one variant differ in the seed and nothing else (method options
  // included), on the same base and data.
  if (replicated) {
    std::map<std::string, std::vector<std::string>> by_variant;
    for (const auto& name : names) by_variant[name.substr(0, name.find('/'))].push_back(name);
    // A path to the same seed's run of another variant (`${seed}` in the matrix: reward/seed-1/final
    // for seed 1) follows from the seed: compared with the seed written as seed-${seed}.
    std::map<std::string, std::map<std::string, std::string>> seedless = whole_configs;
    for (auto& [name, flat] : seedless) {
      const std::string own = "seed-" + (flat.count("seed") ? flat["seed"] : "?");
      for (auto& [key, value] : flat)
        for (size_t at = value.find(own); at != std::string::npos; at = value.find(own, at + 1))
          if (at + own.size() == value.size() || !std::isdigit(static_cast<unsigned char>(value[at + own.size()])))
            value.replace(at, own.size(), "seed-${seed}");
    }
    for (const auto& [variant, group] : by_variant) {
      if (group.size() < 2) continue;
      nlohmann::json found = differing(group, seedless, {"seed", "output_dir"});
      // The base's and the data's bytes, beside the settings that name them.
      std::map<std::string, std::map<std::string, std::string>> hashes;
      for (const auto& name : group) {
        const auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
        hashes[name] = {{"base sha256", text(at(manifests[name], {"base", "sha256"}))},
                        {"data sha256", text(at(manifests[name], {"data", "sha256"}))}};
      }
      for (const auto& d : differing(group, hashes, {})) found.push_back(d);
      for (auto& d : found) {
        d["variant"] = variant;
        differences.push_back(d);
      }
      add("replicates of " + variant + " differ only in the seed", found.empty(), {{"differing_keys", found.size()}});
    }
  }

  bool controlled = true;
  for (const auto& c : checks) controlled = controlled && c["passed"].get<bool>();
  return {{"controlled", controlled}, {"checks", checks}, {"differences", differences}};
}

}  // namespace posttrain
