#include "eval_hooks/lm_eval_task.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/jinja.h"
#include "core/python_re.h"
#include "core/recipe.h"
#include "datasets/sft_data.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

using nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// The task file: keys merged over the include chain, each remembering the file it came from.

struct TaskKeys {
  YAML::Node node{YAML::NodeType::Map};
  std::map<std::string, std::string> file_of;  // key -> the file that set it (for file:line)
  std::map<std::string, int> line_of;  // key -> its line there

  void set(const YAML::Node& key, const YAML::Node& value, const std::string& file) {
    node[key.Scalar()] = value;
    file_of[key.Scalar()] = file;
    line_of[key.Scalar()] = key.Mark().line + 1;
  }
  bool has(const std::string& key) const { return node[key] && !node[key].IsNull(); }
  std::string where(const std::string& key) const { return file_of.at(key) + ":" + std::to_string(line_of.at(key)); }
  [[noreturn]] void fail_at(const std::string& key, const std::string& what) const {
    fail(where(key), key + ": " + what);
  }
  template <typename T>
  T get(const std::string& key, const T& fallback) const {
    if (!has(key)) return fallback;
    try {
      return node[key].as<T>();
    } catch (const YAML::Exception&) {
      fail_at(key, "has the wrong type (got \"" + YAML::Dump(node[key]) + "\")");
    }
  }
};

// lm-eval's Python hooks: the one thing a C++ harness cannot run. Refused in one line, wherever the
// tag sits.
void refuse_python_hooks(const YAML::Node& node, const std::string& file) {
  if (node.Tag() == "!function")
    fail(file + ":" + std::to_string(node.Mark().line + 1),
         "!function names a Python hook, and posttrain runs no Python: write the logic as a Jinja template or "
         "preprocess the data file");
  if (node.IsMap())
    for (const auto& kv : node) refuse_python_hooks(kv.second, file);
  if (node.IsSequence())
    for (const auto& item : node) refuse_python_hooks(item, file);
}

// Paths are relative to the file that names them, even when another file includes it.
void resolve_data_paths(YAML::Node& task, const std::string& file) {
  if (task["dataset"] && task["dataset"].IsScalar())
    task["dataset"] = resolve_recipe_path(file, task["dataset"].Scalar());
  YAML::Node kwargs = task["dataset_kwargs"];
  if (!kwargs || !kwargs.IsMap() || !kwargs["data_files"]) return;
  YAML::Node files = kwargs["data_files"];
  auto resolve = [&](YAML::Node n) {
    if (n.IsScalar()) n = resolve_recipe_path(file, n.Scalar());
    if (n.IsSequence())
      for (size_t i = 0; i < n.size(); ++i)
        if (n[i].IsScalar()) n[i] = resolve_recipe_path(file, n[i].Scalar());
  };
  if (files.IsMap())
    for (auto kv : files) resolve(kv.second);
  else
    resolve(files);
}

void load_task_file(const std::string& task_file, TaskKeys& keys, int depth) {
  YAML::Node task = load_yaml_file(task_file, "task");
  if (!task.IsMap())
    fail(task_file, "a task file must be a mapping (task, dataset_path, output_type, doc_to_text, ...)");
  refuse_python_hooks(task, task_file);
  resolve_data_paths(task, task_file);
  const YAML::Node include = task["include"];
  if (include) {
    const std::string at = task_file + ":" + std::to_string(include.Mark().line + 1);
    if (!include.IsScalar()) fail(at, "include must be the path of one task file");
    if (depth >= 8) fail(at, "include chain is deeper than 8 files (does it loop?)");
    const std::string parent = resolve_recipe_path(task_file, include.Scalar());
    if (!fs::is_regular_file(parent)) fail(at, "included task file " + parent + " not found");
    load_task_file(parent, keys, depth + 1);
  }
  for (const auto& kv : task)
    if (kv.first.Scalar() != "include") keys.set(kv.first, kv.second, task_file);
}

// Every key a task may set: lm-eval's that posttrain implements, posttrain's short forms, and the
// options every suite takes. Anything else is an error, never ignored.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      // lm-eval
      "task", "task_alias", "tag", "group", "dataset_path", "dataset_name", "dataset_kwargs", "training_split",
      "validation_split", "test_split", "fewshot_split", "doc_to_text", "doc_to_target", "doc_to_choice", "description",
      "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot", "output_type", "generation_kwargs",
      "metric_list", "filter_list", "repeats", "should_decontaminate", "metadata",
      // posttrain's short forms (docs/evals.md)
      "dataset", "until", "max_new_tokens", "metric", "labels", "shuffle", "chat",
      // every suite's options
      "data", "limit", "seed", "perturbations", "gameable_margin", "bootstrap", "batch_size", "canary"};
  return keys;
}

// The keys lm-eval reads that call Python or the Hub: named, with what to do instead.
const std::map<std::string, std::string>& refused_keys() {
  static const std::map<std::string, std::string> keys = {
      {"process_docs", "is a Python hook, and posttrain runs no Python: preprocess the data file instead"},
      {"process_results", "is a Python hook, and posttrain runs no Python: use metric_list and filter_list"},
      {"custom_dataset", "is a Python hook, and posttrain runs no Python: give local data through dataset_kwargs"},
      {"use_prompt", "reads a promptsource template, which posttrain does not have: write doc_to_text"},
      {"doc_to_decontamination_query", "is not supported (posttrain's contamination guard is the canary)"},
      {"doc_to_image", "is not supported: posttrain's suites are text only"},
      {"doc_to_audio", "is not supported: posttrain's suites are text only"},
      {"gen_prefix", "is not supported yet"},
      {"unsafe_code", "is not supported: posttrain runs no generated code"}};
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Data: local JSON / CSV through dataset_kwargs.data_files, as datasets.load_dataset reads them.

using Docs = std::vector<std::pair<ordered_json, std::string>>;  // doc, "file:line"

// An int64 in decimal, whole text; false when it is not one (or does not fit).
bool parse_int64(const std::string& text, long long* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *value = std::strtoll(text.c_str(), &end, 10);
  return *end == '\0' && errno != ERANGE;
}

// HF's csv loader types a column by its values: all integers -> int64, all numbers -> float64.
ordered_json csv_value(const std::string& cell, bool integers, bool numbers) {
  long long integer = 0;
  if (integers && parse_int64(cell, &integer)) return integer;
  if (numbers) return std::strtod(cell.c_str(), nullptr);
  return cell;
}

void read_csv_docs(const std::string& path, Docs& docs) {
  const CsvTable table = read_csv(path);
  std::vector<bool> integers(table.header.size(), true), numbers(table.header.size(), true);
  for (const auto& row : table.rows)
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string& cell = row[c];
      long long integer = 0;
      integers[c] = integers[c] && parse_int64(cell, &integer);
      char* end = nullptr;
      std::strtod(cell.c_str(), &end);
      numbers[c] = numbers[c] && !cell.empty() && *end == '\0';
    }
  for (size_t r = 0; r < table.rows.size(); ++r) {
    ordered_json doc = ordered_json::object();
    for (size_t c = 0; c < table.header.size(); ++c)
      doc[table.header[c]] = csv_value(table.rows[r][c], integers[c], numbers[c]);
    docs.emplace_back(std::move(doc), path + ":" + std::to_string(table.lines[r]));
  }
}

// JSON Lines, or one JSON array of objects (both are what load_dataset("json") reads).
void read_json_docs(const std::string& path, Docs& docs) {
  const std::string text = read_file(path);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    ordered_json all;
    try {
      all = ordered_json::parse(text);
    } catch (const ordered_json::exception& e) {
      fail(path, std::string("not valid JSON: ") + e.what());
    }
    for (size_t i = 0; i < all.size(); ++i) {
      if (!all[i].is_object()) fail(path, "item " + std::to_string(i) + " is not an object");
      docs.emplace_back(all[i], path + ": item " + std::to_string(i));
    }
    return;
  }
  DataSpec spec;
  spec.train = path;
  for_each_ordered_jsonl_record(spec, [&](const ordered_json& doc, const std::string& where) {
    if (!doc.is_object()) fail(where, "a doc must be a JSON object");
    docs.emplace_back(doc, where);
  });
}

// split -> its files, from dataset_kwargs.data_files (a path, a list, or split -> path(s)); a path
// or list alone is the "train" split, as in datasets.
std::map<std::string, std::vector<std::string>> data_files(const TaskKeys& keys) {
  const YAML::Node kwargs = keys.node["dataset_kwargs"];
  if (!kwargs.IsMap()) keys.fail_at("dataset_kwargs", "must be a mapping with data_files");
  for (const auto& kv : kwargs)
    if (kv.first.Scalar() != "data_files")
      keys.fail_at("dataset_kwargs", "only data_files is supported (got " + kv.first.Scalar() + ")");
  const YAML::Node files = kwargs["data_files"];
  if (!files) keys.fail_at("dataset_kwargs", "needs data_files: the local files of each split");
  auto list = [&](const YAML::Node& n) {
    std::vector<std::string> out;
    if (n.IsScalar())
      out.push_back(n.Scalar());
    else if (n.IsSequence())
      for (const auto& item : n) out.push_back(item.Scalar());
    else
      keys.fail_at("dataset_kwargs", "data_files must be a path, a list of paths, or split: path(s)");
    return out;
  };
  std::map<std::string, std::vector<std::string>> splits;
  if (files.IsMap())
    for (const auto& kv : files) splits[kv.first.Scalar()] = list(kv.second);
  else
    splits["train"] = list(files);
  return splits;
}

struct Splits {
  Docs eval, fewshot;
  std::string eval_files;  // for messages and the suite's data field
};

Splits read_splits(const TaskKeys& keys, const std::string& task_file) {
  Splits out;
  if (keys.has("dataset")) {  // posttrain's short form: one JSONL file, the test split
    for (const char* key :
         {"dataset_path", "dataset_kwargs", "test_split", "validation_split", "training_split", "fewshot_split"})
      if (keys.has(key))
        keys.fail_at(key, "goes with dataset_path, not with posttrain's dataset: (give one of the two)");
    const std::string path = keys.get<std::string>("dataset", "");
    read_json_docs(path, out.eval);
    out.eval_files = path;
    return out;
  }
  if (!keys.has("dataset_path"))
    fail(task_file, "no data: set dataset_path: json (or csv) with dataset_kwargs.data_files");
  const std::string format = keys.get<std::string>("dataset_path", "");  // json or csv (checked on reading)
  if (keys.has("dataset_name")) keys.fail_at("dataset_name", "goes with hub datasets; local files need none");
  if (!keys.has("dataset_kwargs")) keys.fail_at("dataset_path", "needs dataset_kwargs.data_files (the local files)");
  const auto files = data_files(keys);
  auto load = [&](const std::string& split_key, Docs& docs) -> void {
    const std::string split = keys.get<std::string>(split_key, "");
    const auto it = files.find(split);
    if (it == files.end()) keys.fail_at(split_key, "\"" + split + "\" is not a split in dataset_kwargs.data_files");
    for (const auto& file : it->second) {
      if (&docs == &out.eval) out.eval_files += (out.eval_files.empty() ? "" : ", ") + file;
      if (format == "csv") {
        read_csv_docs(file, docs);
      } else {
        read_json_docs(file, docs);
      }
    }
  };
  // lm-eval evaluates the test split, else the validation split; few-shot examples come from
  // fewshot_split, else training, validation, test (its fallback order).
  if (keys.has("test_split"))
    load("test_split", out.eval);
  else if (keys.has("validation_split"))
    load("validation_split", out.eval);
  else
    fail(keys.where("dataset_path"), "set test_split (or validation_split): the split to evaluate");
  for (const char* key : {"fewshot_split", "training_split", "validation_split", "test_split"})
    if (keys.has(key)) {
      load(key, out.fewshot);
      break;
    }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Python's ast.literal_eval, for the lists doc_to_choice templates print (str(list) is repr).

class PythonLiteral {
 public:
  PythonLiteral(const std::string& text, const std::string& where) : s_(text), where_(where) {}
  ordered_json parse() {
    ordered_json value = parse_value();
    skip_space();
    if (at_ != s_.size()) error("text after the value");
    return value;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(where_, "not a Python literal (" + what + " at character " + std::to_string(at_) + "): " + s_);
  }
  void skip_space() {
    while (at_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[at_]))) ++at_;
  }
  ordered_json parse_value() {
    skip_space();
    if (at_ >= s_.size()) error("end of text");
    const char c = s_[at_];
    if (c == '[' || c == '(') return parse_sequence(c == '[' ? ']' : ')');
    if (c == '\'' || c == '"') return parse_string();
    for (const auto& [word, value] :
         {std::pair<const char*, ordered_json>{"True", true}, {"False", false}, {"None", nullptr}})
      if (s_.compare(at_, std::strlen(word), word) == 0) {
        at_ += std::strlen(word);
        return value;
      }
    const size_t begin = at_;
    if (s_[at_] == '-' || s_[at_] == '+') ++at_;
    while (at_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[at_])) || std::strchr(".eE+-_", s_[at_])))
      ++at_;
    const std::string number = s_.substr(begin, at_ - begin);
    if (number.empty() || number == "-" || number == "+") error("unexpected character");
    char* end = nullptr;
    const long long integer = std::strtoll(number.c_str(), &end, 10);
    if (*end == '\0') return integer;
    const double real = std::strtod(number.c_str(), &end);
    if (*end != '\0') error("bad number");
    return real;
  }
  ordered_json parse_sequence(char close) {
    ++at_;
    ordered_json list = ordered_json::array();
    skip_space();
    if (at_ < s_.size() && s_[at_] == close) {
      ++at_;
      return list;
    }
    while (true) {
      list.push_back(parse_value());
      skip_space();
      if (at_ < s_.size() && s_[at_] == ',') {
        ++at_;
        skip_space();
        if (at_ < s_.size() && s_[at_] == close) {
          ++at_;
          return list;
        }
        continue;
      }
      if (at_ < s_.size() && s_[at_] == close) {
        ++at_;
        return list;
      }
      error("expected , or " + std::string(1, close));
    }
  }
  ordered_json parse_string() {
    std::string out;
    int newlines = 0;
    try {
      at_ = read_python_string(s_, at_, out, &newlines);
    } catch (const UserError& e) {
      error(e.what());
    }
    return out;
  }

  const std::string& s_;
  std::string where_;
  size_t at_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Python's random.Random(seed).sample, which lm-eval's few-shot sampler calls: MT19937 seeded by
// init_by_array with the seed's 32-bit words, _randbelow by getrandbits with rejection.

class PythonRandom {
 public:
  explicit PythonRandom(uint32_t seed) {
    init_genrand(19650218u);
    const uint32_t key[1] = {seed};
    size_t i = 1, j = 0;
    for (size_t k = std::max<size_t>(kN, 1); k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
      ++i;
      ++j;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
      if (j >= 1) j = 0;
    }
    for (size_t k = kN - 1; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
      ++i;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000u;
  }

  // random.sample(range(n), k): indices into the population.
  std::vector<size_t> sample(size_t n, size_t k) {
    std::vector<size_t> result(k);
    size_t setsize = 21;
    if (k > 5)
      setsize += static_cast<size_t>(std::pow(4.0, std::ceil(std::log(3.0 * static_cast<double>(k)) / std::log(4.0))));
    if (n <= setsize) {
      std::vector<size_t> pool(n);
      for (size_t i = 0; i < n; ++i) pool[i] = i;
      for (size_t i = 0; i < k; ++i) {
        const size_t j = randbelow(n - i);
        result[i] = pool[j];
        pool[j] = pool[n - i - 1];
      }
    } else {
      std::set<size_t> selected;
      for (size_t i = 0; i < k; ++i) {
        size_t j = randbelow(n);
        while (selected.count(j)) j = randbelow(n);
        selected.insert(j);
        result[i] = j;
      }
    }
    return result;
  }

 private:
  static constexpr size_t kN = 624, kM = 397;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (size_t i = 1; i < kN; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = kN;
  }
  uint32_t next() {
    if (index_ >= kN) {
      for (size_t i = 0; i < kN; ++i) {
        const uint32_t y = (mt_[i] & 0x80000000u) | (mt_[(i + 1) % kN] & 0x7fffffffu);
        mt_[i] = mt_[(i + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
      }
      index_ = 0;
    }
    uint32_t y = mt_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }
  size_t randbelow(size_t n) {
    int bits = 0;
    while ((n >> bits) != 0) ++bits;  // n.bit_length()
    if (bits == 0) return 0;
    if (bits > 32) throw UserError("few-shot sampling: more than 2^32 docs");
    size_t r = next() >> (32 - bits);
    while (r >= n) r = next() >> (32 - bits);
    return r;
  }

  uint32_t mt_[kN];
  size_t index_ = kN;
};

// ---------------------------------------------------------------------------------------------
// doc_to_text / doc_to_target / doc_to_choice with lm-eval's semantics.

class DocTemplates {
 public:
  DocTemplates(const std::set<std::string>& features, const std::string& task_file)
      : features_(features), task_file_(task_file) {}

  std::string render(const std::string& source, const ordered_json& doc, const std::string& where) {
    auto it = templates_.find(source);
    if (it == templates_.end())
      it = templates_.emplace(source, JinjaTemplate(source, task_file_, lm_eval_options())).first;
    try {
      return it->second.render(doc).text;
    } catch (const UserError& e) {
      fail(where, e.what());
    }
  }

  // A string spec names a column (a feature of the dataset) or is a template; an int is itself.
  ordered_json text(const YAML::Node& spec, const ordered_json& doc, const std::string& where, bool has_choices) {
    if (is_int(spec)) return spec.as<long long>();
    const std::string s = spec.Scalar();
    if (features_.count(s)) return doc.contains(s) ? doc[s] : ordered_json();
    const std::string rendered = render(s, doc, where);
    if (has_choices && is_digits(rendered)) return index_of(rendered, where);
    return rendered;
  }
  ordered_json target(const YAML::Node& spec, const ordered_json& doc, const std::string& where, bool has_choices) {
    if (is_int(spec)) return spec.as<long long>();
    if (spec.IsSequence()) {
      ordered_json list = ordered_json::array();
      for (const auto& item : spec) list.push_back(item.Scalar());
      return list;
    }
    const std::string s = spec.Scalar();
    if (features_.count(s)) return doc.contains(s) ? doc[s] : ordered_json();
    const std::string rendered = render(s, doc, where);
    if (has_choices && is_digits(rendered)) return index_of(rendered, where);
    if (rendered.size() >= 2 && rendered.front() == '[' && rendered.back() == ']') {
      try {
        return PythonLiteral(rendered, where).parse();
      } catch (const UserError&) {
        return rendered;  // lm-eval keeps the text when literal_eval fails
      }
    }
    return rendered;
  }
  std::vector<std::string> choices(const YAML::Node& spec, const ordered_json& doc, const std::string& where) {
    ordered_json list;
    if (spec.IsSequence()) {
      list = ordered_json::array();
      for (const auto& item : spec) list.push_back(item.Scalar());
    } else if (spec.IsMap()) {
      list = ordered_json::array();
      for (const auto& kv : spec) list.push_back(kv.second.Scalar());
    } else if (features_.count(spec.Scalar())) {
      list = doc.contains(spec.Scalar()) ? doc[spec.Scalar()] : ordered_json();
    } else {
      list = PythonLiteral(render(spec.Scalar(), doc, where), where).parse();
    }
    if (!list.is_array()) fail(where, "doc_to_choice must give a list of choices");
    std::vector<std::string> out;
    for (const auto& c : list) out.push_back(c.is_string() ? c.get<std::string>() : c.dump());
    return out;
  }

 private:
  static bool is_int(const YAML::Node& spec) {
    if (!spec.IsScalar() || spec.Tag() == "!") return false;  // a quoted scalar is a string
    const std::string& s = spec.Scalar();
    return !s.empty() && is_digits(s[0] == '-' ? s.substr(1) : s);
  }
  static long long index_of(const std::string& digits, const std::string& where) {
    long long index = 0;
    if (!parse_int64(digits, &index)) fail(where, "choice index " + digits + " is out of range");
    return index;
  }
  static bool is_digits(const std::string& s) {
    if (s.empty()) return false;
    for (unsigned char c : s)
      if (!std::isdigit(c)) return false;
    return true;
  }

  const std::set<std::string>& features_;
  std::string task_file_;
  std::map<std::string, JinjaTemplate> templates_;
};

std::string as_text(const ordered_json& value, const std::string& where, const std::string& what) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<long long>());
  if (value.is_number()) return python_float_repr(value.get<double>());
  fail(where, what + " gives " + value.dump() + ", not text");
}

// ---------------------------------------------------------------------------------------------
// Generation settings, filters and metrics.

// metric_list's entries: {metric, aggregation: mean, higher_is_better: true, options...}; the shared
// keys are checked here, each entry's other keys returned for its output type to read.
struct MetricEntry {
  std::string name;
  std::vector<std::pair<std::string, YAML::Node>> options;
};

std::vector<MetricEntry> metric_entries(const TaskKeys& keys) {
  const YAML::Node list = keys.node["metric_list"];
  if (!list.IsSequence() || list.size() == 0) keys.fail_at("metric_list", "must be a list of {metric: ...}");
  std::vector<MetricEntry> out;
  for (const auto& entry : list) {
    if (!entry.IsMap() || !entry["metric"]) keys.fail_at("metric_list", "each entry needs a metric");
    MetricEntry e;
    for (const auto& kv : entry) {
      const std::string k = kv.first.Scalar();
      if (k == "metric") {
        e.name = kv.second.Scalar();
      } else if (k == "aggregation") {
        if (kv.second.Scalar() != "mean") keys.fail_at("metric_list", "aggregation must be mean");
      } else if (k == "higher_is_better") {
        if (kv.second.Scalar() != "true" && kv.second.Scalar() != "True")
          keys.fail_at("metric_list", "higher_is_better must be true");
      } else {
        e.options.emplace_back(k, kv.second);
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

void read_generation(const TaskKeys& keys, const std::string& fewshot_delimiter, GenerationStyle& g) {
  const bool short_form = keys.has("until") || keys.has("max_new_tokens") || keys.has("metric");
  const bool harness_form = keys.has("generation_kwargs") || keys.has("metric_list") || keys.has("filter_list");
  if (short_form && harness_form)
    fail(keys.where(keys.has("until")    ? "until"
                    : keys.has("metric") ? "metric"
                                         : "max_new_tokens"),
         "posttrain's until / max_new_tokens / metric cannot be mixed with generation_kwargs / metric_list / "
         "filter_list: use one form");
  if (short_form) {  // posttrain's form: trimmed exact match or containment
    const std::string metric = keys.get<std::string>("metric", "exact_match");
    if (metric != "exact_match" && metric != "contains") keys.fail_at("metric", "must be exact_match or contains");
    g.metrics = {GenerationMetric{metric}};
    g.until = keys.get<std::vector<std::string>>("until", {"\n"});
    g.max_new_tokens = keys.get<int64_t>("max_new_tokens", 32);
    if (g.max_new_tokens <= 0) keys.fail_at("max_new_tokens", "must be positive");
    return;
  }
  // lm-eval: untrimmed, scores named "metric,filter".
  g.trim_references = false;
  g.keys_with_filter = true;
  g.until = {fewshot_delimiter};
  g.max_new_tokens = 256;
  if (keys.has("generation_kwargs")) {
    const YAML::Node kwargs = keys.node["generation_kwargs"];
    if (!kwargs.IsMap()) keys.fail_at("generation_kwargs", "must be a mapping");
    g.until.clear();  // given kwargs without until: generation stops at the end token only
    for (const auto& kv : kwargs) {
      const std::string k = kv.first.Scalar();
      try {
        if (k == "until") {
          g.until = kv.second.IsSequence() ? kv.second.as<std::vector<std::string>>()
                                           : std::vector<std::string>{kv.second.as<std::string>()};
        } else if (k == "max_gen_toks") {
          g.max_new_tokens = kv.second.as<int64_t>();
          if (g.max_new_tokens <= 0) keys.fail_at("generation_kwargs", "max_gen_toks must be positive");
        } else if (k == "do_sample") {
          if (kv.second.as<bool>())
            keys.fail_at("generation_kwargs", "do_sample: true is not supported (evals decode greedily)");
        } else if (k == "temperature") {
          if (kv.second.as<double>() != 0.0)
            keys.fail_at("generation_kwargs", "temperature must be 0 (evals decode greedily)");
        } else {
          keys.fail_at("generation_kwargs",
                       k + " is not supported (until, max_gen_toks, do_sample: false, temperature: 0)");
        }
      } catch (const YAML::Exception&) {
        keys.fail_at("generation_kwargs", k + " has the wrong type");
      }
    }
  }
  g.metrics = {GenerationMetric{}};
  if (keys.has("metric_list")) {
    g.metrics.clear();
    for (const auto& entry : metric_entries(keys)) {
      GenerationMetric m;
      m.name = entry.name;
      if (m.name != "exact_match")
        keys.fail_at("metric_list", "metric \"" + m.name + "\" is not supported for generate_until (exact_match)");
      for (const auto& [k, value] : entry.options) {
        try {
          if (k == "ignore_case")
            m.ignore_case = value.as<bool>();
          else if (k == "ignore_punctuation")
            m.ignore_punctuation = value.as<bool>();
          else if (k == "ignore_numbers")
            m.ignore_numbers = value.as<bool>();
          else if (k == "regexes_to_ignore")
            m.regexes_to_ignore = value.as<std::vector<std::string>>();
          else
            keys.fail_at("metric_list", k + " is not supported (metric, aggregation, higher_is_better, ignore_case, "
                                            "ignore_punctuation, ignore_numbers, regexes_to_ignore)");
        } catch (const YAML::Exception&) {
          keys.fail_at("metric_list", k + " has the wrong type");
        }
      }
      for (const auto& r : m.regexes_to_ignore) check_python_regex(r, keys.where("metric_list"));
      g.metrics.push_back(m);
    }
  }
  g.filters = {FilterPipeline{"none", {AnswerFilter{"take_first"}}}};
  if (keys.has("filter_list")) {
    g.filters.clear();
    const YAML::Node list = keys.node["filter_list"];
    if (!list.IsSequence() || list.size() == 0) keys.fail_at("filter_list", "must be a list of {name, filter: [...]}");
    for (const auto& entry : list) {
      FilterPipeline pipeline;
      if (!entry.IsMap() || !entry["name"] || !entry["filter"] || !entry["filter"].IsSequence())
        keys.fail_at("filter_list", "each entry needs a name and a filter list");
      for (const auto& kv : entry)
        if (kv.first.Scalar() != "name" && kv.first.Scalar() != "filter")
          keys.fail_at("filter_list", kv.first.Scalar() + " is not a filter_list key (name, filter)");
      pipeline.name = entry["name"].Scalar();
      for (const auto& step : entry["filter"]) {
        AnswerFilter f;
        if (!step.IsMap() || !step["function"]) keys.fail_at("filter_list", "each filter step needs a function");
        f.function = step["function"].Scalar();
        f.pattern = R"(#### (\-?[0-9\.\,]+))";  // lm-eval's RegexFilter default
        for (const auto& kv : step) {
          const std::string k = kv.first.Scalar();
          if (k == "function") continue;
          if (f.function != "regex") keys.fail_at("filter_list", "filter " + f.function + " takes no " + k);
          if (k == "regex_pattern")
            f.pattern = kv.second.Scalar();
          else if (k == "group_select")
            f.group_select = kv.second.as<int>();
          else if (k == "fallback")
            f.fallback = kv.second.Scalar();
          else
            keys.fail_at("filter_list", "regex takes regex_pattern, group_select, fallback (not " + k + ")");
        }
        if (f.function == "regex")
          check_python_regex(f.pattern, keys.where("filter_list"));
        else if (f.function != "take_first" && f.function != "remove_whitespace" && f.function != "lowercase" &&
                 f.function != "uppercase")
          keys.fail_at("filter_list",
                       "filter function \"" + f.function +
                           "\" is not supported (regex, take_first, remove_whitespace, lowercase, uppercase)");
        pipeline.steps.push_back(f);
      }
      g.filters.push_back(pipeline);
    }
  }
}

}  // namespace

namespace {
LmEvalTask read_task_checked(const std::string& task_file, const YAML::Node& entry_options,
                             const std::string& recipe_file, const std::string& path);
}  // namespace

LmEvalTask read_lm_eval_task(const std::string& task_file, const YAML::Node& entry_options,
                             const std::string& recipe_file, const std::string& path) {
  // A value of the wrong YAML shape anywhere below is a message naming the file, not a crash.
  return with_yaml_errors(task_file, [&] { return read_task_checked(task_file, entry_options, recipe_file, path); });
}

namespace {

LmEvalTask read_task_checked(const std::string& task_file, const YAML::Node& entry_options,
                             const std::string& recipe_file, const std::string& path) {
  if (!fs::exists(task_file)) fail(recipe_file + ": " + path + ".suite", "task file " + task_file + " not found");
  TaskKeys keys;
  load_task_file(task_file, keys, 0);
  // The recipe entry's options (limit, perturbations, ...) override the task file's.
  if (entry_options && entry_options.IsMap())
    for (const auto& kv : entry_options) {
      const std::string key = kv.first.as<std::string>();
      if (key == "dataset")  // the entry brings its own data (the hackathon's event items)
        for (const char* k : {"dataset_path", "dataset_kwargs", "dataset_name", "test_split", "validation_split",
                              "training_split", "fewshot_split"})
          keys.node.remove(k);
      keys.set(kv.first, kv.second, recipe_file);
    }
  for (const auto& kv : keys.node) {
    const std::string key = kv.first.Scalar();
    const auto refused = refused_keys().find(key);
    if (refused != refused_keys().end()) keys.fail_at(key, refused->second);
    if (!known_keys().count(key)) keys.fail_at(key, "unknown key (docs/evals.md lists the task keys posttrain reads)");
  }

  if (keys.has("dataset_path")) {  // before anything else: a hub task cannot run here at all
    const std::string source = keys.get<std::string>("dataset_path", "");
    if (source != "json" && source != "csv")
      keys.fail_at("dataset_path", "\"" + source +
                                       "\" names a Hugging Face hub dataset, which posttrain does not download: use "
                                       "dataset_path: json (or csv) with dataset_kwargs.data_files");
  }

  LmEvalTask task;
  task.name = keys.get<std::string>("task", fs::path(task_file).stem().string());
  task.output_type = keys.get<std::string>("output_type", "");
  if (task.output_type.empty()) fail(task_file, "output_type is required (multiple_choice or generate_until)");
  if (task.output_type != "multiple_choice" && task.output_type != "generate_until")
    keys.fail_at("output_type", "\"" + task.output_type +
                                    "\" is not supported (multiple_choice, generate_until; not loglikelihood or "
                                    "loglikelihood_rolling)");
  for (const char* key : {"doc_to_text", "doc_to_target"})
    if (!keys.has(key)) fail(task_file, std::string(key) + " is required");
  const bool mc = task.output_type == "multiple_choice";
  if (mc && !keys.has("doc_to_choice"))
    fail(task_file, "doc_to_choice is required for multiple_choice (a column holding a list, a list, or a template)");
  if (keys.get<int>("repeats", 1) != 1) keys.fail_at("repeats", "must be 1 (evals decode greedily)");
  if (keys.get<bool>("should_decontaminate", false))
    keys.fail_at("should_decontaminate", "is not supported (posttrain's contamination guard is the canary)");
  task.chat = keys.get<bool>("chat", false);
  task.target_delimiter = keys.get<std::string>("target_delimiter", " ");
  if (task.chat) task.target_delimiter = "";  // as lm-eval with --apply_chat_template
  const std::string fewshot_delimiter = keys.get<std::string>("fewshot_delimiter", "\n\n");
  const int num_fewshot = keys.get<int>("num_fewshot", 0);
  if (num_fewshot < 0) keys.fail_at("num_fewshot", "must be >= 0");

  // fewshot_config: sampler, hand-written samples, and the templates the examples use.
  std::string sampler = "default";
  YAML::Node shot_text = keys.node["doc_to_text"], shot_target = keys.node["doc_to_target"],
             shot_choice = keys.node["doc_to_choice"];
  std::vector<ordered_json> hand_samples;
  if (keys.has("fewshot_config")) {
    const YAML::Node config = keys.node["fewshot_config"];
    if (!config.IsMap()) keys.fail_at("fewshot_config", "must be a mapping");
    for (const auto& kv : config) {
      const std::string k = kv.first.Scalar();
      if (k == "sampler") sampler = kv.second.Scalar();
      // reset() rebinds; operator= would overwrite the task's own doc_to_* node.
      else if (k == "doc_to_text")
        shot_text.reset(kv.second);
      else if (k == "doc_to_target")
        shot_target.reset(kv.second);
      else if (k == "doc_to_choice")
        shot_choice.reset(kv.second);
      else if (k == "samples") {
        if (!kv.second.IsSequence()) keys.fail_at("fewshot_config", "samples must be a list of docs");
        for (const auto& doc : kv.second) {
          if (!doc.IsMap()) keys.fail_at("fewshot_config", "samples must be a list of docs (mappings)");
          hand_samples.push_back(yaml_to_typed_json(doc));
        }
      } else {
        keys.fail_at("fewshot_config",
                     k + " is not supported (sampler, samples, doc_to_text, doc_to_target, doc_to_choice)");
      }
    }
    if (sampler != "default" && sampler != "first_n")
      keys.fail_at("fewshot_config", "sampler must be default or first_n");
  }

  Splits splits = read_splits(keys, task_file);
  if (!hand_samples.empty()) {
    splits.fewshot.clear();
    for (const auto& doc : hand_samples) splits.fewshot.emplace_back(doc, keys.where("fewshot_config"));
  } else if (splits.fewshot.empty()) {
    splits.fewshot = splits.eval;  // lm-eval's last resort: the test docs
  }
  if (splits.eval.empty()) fail(task_file, "the evaluated split has no docs");
  std::set<std::string> features;  // the dataset's columns: a spec naming one reads it
  for (const auto& [doc, where] : splits.eval)
    for (const auto& kv : doc.items()) features.insert(kv.key());

  DocTemplates templates(features, task_file);
  auto choices_of = [&](const YAML::Node& spec, const ordered_json& doc, const std::string& where) {
    return mc || (spec && !spec.IsNull()) ? templates.choices(spec, doc, where) : std::vector<std::string>{};
  };
  const bool has_choices = keys.has("doc_to_choice");
  // One few-shot example: its text, the delimiter and its target, as lm-eval's ContextSampler writes it.
  auto example = [&](const ordered_json& doc, const std::string& where) {
    const ordered_json text = templates.text(shot_text, doc, where, has_choices);
    const ordered_json target = templates.target(shot_target, doc, where, has_choices);
    std::string out;
    if (text.is_string())
      out += text.get<std::string>();
    else if (text.is_number_integer())
      out += choices_of(shot_choice, doc, where).at(static_cast<size_t>(text.get<long long>()));
    std::string target_text;
    if (target.is_array())
      target_text = target.empty() ? "" : as_text(target[0], where, "doc_to_target");
    else if (target.is_number_integer() && has_choices) {
      const auto choices = choices_of(shot_choice, doc, where);
      const auto index = target.get<long long>();
      if (index < 0 || index >= static_cast<long long>(choices.size()))
        fail(where, "doc_to_target is out of the choices' range");
      target_text = choices[static_cast<size_t>(index)];
    } else
      target_text = as_text(target, where, "doc_to_target");
    if (!(target.is_string() && target.get<std::string>().empty()))
      out += task.target_delimiter + target_text + fewshot_delimiter;
    return out;
  };

  PythonRandom rnd(1234);  // lm-eval's default fewshot_random_seed
  // lm-eval draws one doc more when config.fewshot_split == config.test_split (None == None too), and
  // drops the evaluated doc from the draw.
  const bool same_split = keys.get<std::string>("fewshot_split", "") == keys.get<std::string>("test_split", "");
  for (size_t index = 0; index < splits.eval.size(); ++index) {
    const auto& [doc, where] = splits.eval[index];
    LmEvalRequest request;
    request.id = doc.contains("id") ? (doc["id"].is_string() ? doc["id"].get<std::string>() : doc["id"].dump())
                                    : "doc-" + std::to_string(index);
    std::string context;
    if (keys.has("description")) context = templates.render(keys.get<std::string>("description", ""), doc, where);
    if (num_fewshot > 0) {
      const size_t draw = static_cast<size_t>(num_fewshot) + (same_split ? 1 : 0);
      if (draw > splits.fewshot.size())
        keys.fail_at("num_fewshot", std::to_string(draw) + " few-shot docs needed, the few-shot split has " +
                                        std::to_string(splits.fewshot.size()));
      std::vector<size_t> drawn;
      if (sampler == "first_n")
        for (size_t k = 0; k < draw; ++k) drawn.push_back(k);
      else
        drawn = rnd.sample(splits.fewshot.size(), draw);
      int used = 0;
      for (size_t k : drawn) {
        if (used == num_fewshot) break;
        if (nlohmann::json(splits.fewshot[k].first) == nlohmann::json(doc)) continue;  // not the doc itself
        context += example(splits.fewshot[k].first, splits.fewshot[k].second);
        ++used;
      }
    }
    const ordered_json text = templates.text(keys.node["doc_to_text"], doc, where, has_choices);
    if (!text.is_string())
      fail(where, "doc_to_text gives " + text.dump() +
                      ": lm-eval's multiple-input tasks (a choice index as the text) are not supported");
    request.context = context + text.get<std::string>();
    const ordered_json target = templates.target(keys.node["doc_to_target"], doc, where, has_choices);
    if (mc) {
      request.choices = templates.choices(keys.node["doc_to_choice"], doc, where);
      if (request.choices.size() < 2) fail(where, "needs at least two choices");
      if (target.is_number_integer()) {
        request.gold = static_cast<int>(target.get<long long>());
      } else if (target.is_string()) {
        const auto at = std::find(request.choices.begin(), request.choices.end(), target.get<std::string>());
        if (at == request.choices.end())
          fail(where, "doc_to_target gives \"" + target.get<std::string>() + "\": not one of the choices");
        request.gold = static_cast<int>(at - request.choices.begin());
      } else {
        fail(where, "doc_to_target gives " + target.dump() + ": multiple_choice needs one gold index or choice");
      }
      if (request.gold < 0 || request.gold >= static_cast<int>(request.choices.size()))
        fail(where, "doc_to_target gives index " + std::to_string(request.gold) + ", out of the " +
                        std::to_string(request.choices.size()) + " choices");
    } else {
      auto reference = [&](const ordered_json& value) {
        if (value.is_number_integer() && has_choices) {
          const auto choices = templates.choices(keys.node["doc_to_choice"], doc, where);
          const auto i = value.get<long long>();
          if (i < 0 || i >= static_cast<long long>(choices.size()))
            fail(where, "doc_to_target is out of the choices' range");
          return choices[static_cast<size_t>(i)];
        }
        return as_text(value, where, "doc_to_target");
      };
      if (target.is_array())
        for (const auto& t : target) request.targets.push_back(reference(t));
      else
        request.targets.push_back(reference(target));
      if (request.targets.empty()) fail(where, "doc_to_target gives no reference");
    }
    task.requests.push_back(std::move(request));
  }

  // posttrain's presentation options and the options every suite has.
  YAML::Node rest(YAML::NodeType::Map);
  for (const char* key : {"data", "limit", "seed", "perturbations", "gameable_margin", "bootstrap", "batch_size",
                          "canary", "labels", "shuffle"})
    if (keys.node[key]) rest[key] = keys.node[key];
  YamlSection options(rest, "", task_file);
  if (mc) {
    task.common = read_common_options(options, {"order", "labels", "format"}, false);
    McStyle& style = task.mc_style;
    style.labels = options.get<std::string>("labels", "none");
    if (style.labels != "letters" && style.labels != "numbers" && style.labels != "none")
      options.fail_at("labels", "must be letters, numbers or none");
    style.template_index = -1;  // the context is the whole prompt
    style.shuffle = options.get<bool>("shuffle", false);  // lm-eval's order unless asked
    style.seed = task.common.seed;
    style.axes = task.common.perturbations;
    style.target_delimiter = task.target_delimiter;
    style.norm_by_choice_characters = true;
    if (keys.has("metric_list")) {
      const auto entries = metric_entries(keys);
      for (const auto& entry : entries) {
        if (entry.name != "acc" && entry.name != "acc_norm")
          keys.fail_at("metric_list",
                       "metric \"" + entry.name + "\" is not supported for multiple_choice (acc, acc_norm)");
        if (!entry.options.empty())
          keys.fail_at("metric_list", entry.options.front().first + " is not supported for multiple_choice");
      }
      style.primary = entries.front().name;
    }
    for (const char* key : {"generation_kwargs", "filter_list", "until", "max_new_tokens", "metric"})
      if (keys.has(key)) keys.fail_at(key, "applies to generate_until, not multiple_choice");
  } else {
    task.common = read_common_options(options, {"format"}, false);
    for (const char* key : {"labels", "shuffle"})
      if (keys.has(key)) keys.fail_at(key, "applies to multiple_choice, not generate_until");
    read_generation(keys, fewshot_delimiter, task.generation);
    task.generation.chat = task.chat;
  }
  options.finish();
  task.common.data = splits.eval_files;
  return task;
}

}  // namespace

std::unique_ptr<EvalSuite> make_lm_eval_suite(LmEvalTask task) {
  std::unique_ptr<EvalSuite> suite;
  if (task.output_type == "multiple_choice") {
    std::vector<McItem> items;
    for (const auto& r : task.requests) {
      McItem item;
      item.id = r.id;
      item.question = r.context;
      item.choices = r.choices;
      item.gold = r.gold;
      item.truth.assign(item.choices.size(), 0);
      item.truth[static_cast<size_t>(item.gold)] = 1;
      items.push_back(std::move(item));
    }
    apply_limit(items, task.common.limit);
    suite = make_mc_suite(std::move(items), task.mc_style, task.common, task.chat);
  } else {
    std::vector<GenerationItem> items;
    for (const auto& r : task.requests) items.push_back({r.id, r.context, r.targets});
    apply_limit(items, task.common.limit);
    suite = make_generation_suite(std::move(items), task.generation, task.common);
  }
  suite->name = task.name;
  return suite;
}

}  // namespace posttrain
