#include "theories/theory.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/recipe.h"
#include "core/variants.h"
#include "core/yaml_reader.h"
#include "trainers/plugin.h"
#include "trainers/run.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// The names eval summaries are stored under: a registered suite's name, or a task file's stem.
std::set<std::string> matrix_metrics(const Matrix& matrix) {
  std::set<std::string> names;
  if (!matrix.evals || !matrix.evals.IsSequence()) return names;
  for (const auto& entry : matrix.evals)
    if (entry.IsMap() && entry["suite"] && entry["suite"].IsScalar()) {
      const fs::path suite = entry["suite"].Scalar();
      names.insert(suite.extension() == ".yaml" || suite.extension() == ".yml" ? suite.stem().string()
                                                                               : suite.string());
    }
  return names;
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
  if (!node || node.IsNull()) return nullptr;
  if (node.IsScalar()) return node.Scalar();
  if (node.IsSequence()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : node) out.push_back(yaml_to_json(item));
    return out;
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& kv : node) out[kv.first.Scalar()] = yaml_to_json(kv.second);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> read_assumptions(const std::string& path) {
  const YAML::Node root = load_yaml_file(path, "assumptions");
  if (!root.IsSequence()) fail(path, "an assumptions registry is a list of {id, statement}");
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> ids;
  for (size_t i = 0; i < root.size(); ++i) {
    YamlSection entry(root[i], "[" + std::to_string(i) + "]", path);
    const std::string id = entry.require<std::string>("id");
    const std::string statement = entry.require<std::string>("statement");
    entry.finish();
    if (!ids.insert(id).second) entry.fail_at("id", "\"" + id + "\" is listed twice");
    out.emplace_back(id, statement);
  }
  return out;
}

Theory read_theory(const std::string& path, const std::string& assumptions_path) {
  const YAML::Node root = load_yaml_file(path, "theory");
  if (!root.IsMap()) fail(path, "a theory is a mapping (id, title, statement, matrix, assumptions, predictions)");
  YamlSection top(root, "", path);
  Theory t;
  t.file = fs::absolute(path).string();
  t.id = top.require<std::string>("id");
  if (t.id.empty() || t.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos)
    top.fail_at("id", "must be lower-case letters, digits, '_', '.' or '-'");
  t.title = top.require<std::string>("title");
  t.statement = top.require<std::string>("statement");
  t.authors = top.get<std::vector<std::string>>("authors", {});
  t.matrix = top.require<std::string>("matrix");
  t.matrix_file = resolve_recipe_path(path, t.matrix);
  t.assumptions = top.get<std::vector<std::string>>("assumptions", {});
  std::set<std::string> known;
  for (const auto& [id, statement] : read_assumptions(assumptions_path)) known.insert(id);
  std::set<std::string> seen;
  for (const auto& a : t.assumptions) {
    if (!known.count(a)) top.fail_at("assumptions", "\"" + a + "\" is not in the registry " + assumptions_path);
    if (!seen.insert(a).second) top.fail_at("assumptions", "\"" + a + "\" is listed twice");
  }

  const Matrix matrix = parse_matrix(t.matrix_file, load_plugins, trainer_data_kind);
  std::set<std::string> variants;
  for (const auto& v : matrix.variants) variants.insert(v.name);
  const std::set<std::string> metrics = matrix_metrics(matrix);

  const YAML::Node list = top.raw("predictions");
  if (!list || !list.IsSequence() || list.size() == 0) top.fail_at("predictions", "must be a non-empty list");
  std::set<std::string> prediction_ids;
  for (size_t i = 0; i < list.size(); ++i) {
    YamlSection p(list[i], "predictions[" + std::to_string(i) + "]", path);
    Prediction out;
    out.id = p.require<std::string>("id");
    if (!prediction_ids.insert(out.id).second) p.fail_at("id", "\"" + out.id + "\" is used twice");
    std::set<std::string> proposed;  // a new method this prediction declares
    if (p.has("new_variant")) {
      const YAML::Node v = p.raw("new_variant");
      if (!v.IsMap() || !v["name"] || !v["method"])
        p.fail_at("new_variant", "must be a variant entry: {name, method, <method>: {options}}");
      out.new_variant = yaml_to_json(v);
      proposed.insert(v["name"].Scalar());
    }
    const auto variant = [&](YamlSection& s, const std::string& key) {
      const std::string name = s.require<std::string>(key);
      if (!variants.count(name) && !proposed.count(name))
        s.fail_at(key,
                  "\"" + name + "\" is not a variant of " + t.matrix_file + " (nor a new_variant of this prediction)");
      return name;
    };
    const auto metric = [&](YamlSection& s) {
      const std::string m = s.require<std::string>("metric");
      // A logged metric names a key of the runs' metrics.jsonl, which exists only once they have
      // run: it is checked for shape here, and a key no run logged leaves the prediction unresolved.
      if (m.rfind("log:", 0) == 0) {
        if (m.size() == 4) s.fail_at("metric", "\"log:\" must name a logged key, e.g. log:train/loss");
        return m;
      }
      if (!metrics.count(m)) {
        std::string list_text;
        for (const auto& k : metrics) list_text += " " + k;
        s.fail_at("metric", "\"" + m + "\" is not an eval suite of the matrix (its suites:" + list_text +
                                "; or log:<key> for a logged metric)");
      }
      return m;
    };
    const int kinds = p.has("compare") + p.has("interval") + p.has("ranking");
    if (kinds != 1) p.fail_at("id", "a prediction has exactly one of compare, interval, ranking");
    if (p.has("compare")) {
      out.kind = "compare";
      YamlSection c = p.section("compare");
      out.metric = metric(c);
      out.better = variant(c, "better");
      out.worse = variant(c, "worse");
      if (out.better == out.worse) c.fail_at("worse", "compares a variant with itself");
      c.finish();
    } else if (p.has("interval")) {
      out.kind = "interval";
      YamlSection c = p.section("interval");
      out.metric = metric(c);
      out.variant = variant(c, "variant");
      if (c.has("minus")) out.minus = variant(c, "minus");
      out.low = c.require<double>("low");
      out.high = c.require<double>("high");
      if (!(out.low < out.high)) c.fail_at("high", "must be above low");
      c.finish();
    } else {
      out.kind = "ranking";
      YamlSection c = p.section("ranking");
      out.metric = metric(c);
      const YAML::Node order = c.raw("order");
      if (!order || !order.IsSequence() || order.size() < 2) c.fail_at("order", "must list at least two variants");
      std::set<std::string> listed;
      for (size_t k = 0; k < order.size(); ++k) {
        const std::string name = order[k].Scalar();
        if (!variants.count(name) && !proposed.count(name))
          c.fail_at("order", "\"" + name + "\" is not a variant of " + t.matrix_file);
        if (!listed.insert(name).second) c.fail_at("order", "\"" + name + "\" is listed twice");
        out.order.push_back(name);
      }
      c.finish();
    }
    if (out.kind != "ranking") {
      if (!p.has("probability")) {  // a misspelt probability: say so, rather than "required"
        p.get<double>("probability", 0.5);  // known now, so the message suggests it
        p.finish();
      }
      out.probability = p.require<double>("probability");
      if (!(out.probability > 0 && out.probability < 1))
        p.fail_at("probability", "must be strictly between 0 and 1 (a certain forecast scores -infinity when wrong)");
    }
    p.finish();
    t.predictions.push_back(out);
  }
  top.finish();
  return t;
}

std::string canonical_theory(const Theory& t) {
  nlohmann::json predictions = nlohmann::json::array();
  for (const auto& p : t.predictions) {
    nlohmann::json j = {{"id", p.id}, {"kind", p.kind}, {"metric", p.metric}};
    if (p.kind == "compare") j["better"] = p.better, j["worse"] = p.worse;
    if (p.kind == "interval") j["variant"] = p.variant, j["minus"] = p.minus, j["low"] = p.low, j["high"] = p.high;
    if (p.kind == "ranking") j["order"] = p.order;
    if (p.kind != "ranking") j["probability"] = p.probability;
    if (!p.new_variant.is_null()) j["new_variant"] = p.new_variant;
    predictions.push_back(j);
  }
  return nlohmann::json({{"id", t.id},
                         {"title", t.title},
                         {"statement", t.statement},
                         {"authors", t.authors},
                         {"matrix", t.matrix},
                         {"assumptions", t.assumptions},
                         {"predictions", predictions}})
      .dump();
}

Theory theory_from_canonical(const nlohmann::json& j) {
  Theory t;
  t.id = j.at("id").get<std::string>();
  t.title = j.at("title").get<std::string>();
  t.statement = j.at("statement").get<std::string>();
  t.authors = j.at("authors").get<std::vector<std::string>>();
  t.matrix = j.at("matrix").get<std::string>();
  t.assumptions = j.at("assumptions").get<std::vector<std::string>>();
  for (const auto& pj : j.at("predictions")) {
    Prediction p;
    p.id = pj.at("id").get<std::string>();
    p.kind = pj.at("kind").get<std::string>();
    p.metric = pj.at("metric").get<std::string>();
    p.better = pj.value("better", "");
    p.worse = pj.value("worse", "");
    p.variant = pj.value("variant", "");
    p.minus = pj.value("minus", "");
    p.low = pj.value("low", 0.0);
    p.high = pj.value("high", 0.0);
    if (pj.contains("order")) p.order = pj["order"].get<std::vector<std::string>>();
    p.probability = pj.value("probability", 0.5);
    if (pj.contains("new_variant")) p.new_variant = pj["new_variant"];
    t.predictions.push_back(p);
  }
  return t;
}

std::vector<std::string> named_variants(const Theory& t) {
  std::vector<std::string> out;
  const auto add = [&](const std::string& v) {
    if (!v.empty() && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  };
  for (const auto& p : t.predictions) {
    add(p.better), add(p.worse), add(p.variant), add(p.minus);
    for (const auto& v : p.order) add(v);
  }
  return out;
}

}  // namespace posttrain
