#include "eval_hooks/suite.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/files.h"
#include "datasets/h5_io.h"
#include "datasets/sft_data.h"
#include "eval_hooks/scoring.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

struct SuiteEntry {
  SuiteFactory factory;
  std::string description;
};

std::map<std::string, SuiteEntry>& registry() {
  static std::map<std::string, SuiteEntry> suites;
  return suites;
}

std::string known_suites() {
  std::string names;
  for (const auto& n : suite_names()) names += (names.empty() ? "" : ", ") + n;
  return names;
}

std::string line_of(const std::string& file, const YAML::Node& node) {
  return file + ":" + std::to_string(node.Mark().line + 1);
}

// A task file with its `include:` chain merged in: lm-eval-harness tasks share settings through
// `include: parent.yaml` (relative to the including file), and the including file's keys win.
YAML::Node load_task_file(const std::string& task_file, int depth = 0) {
  YAML::Node task = load_yaml_file(task_file, "task");
  if (!task.IsMap()) fail(task_file, "a task file must be a mapping (task, dataset, output_type, doc_to_text, ...)");
  // A relative dataset path is relative to the file that names it, even when another file includes it.
  if (task["dataset"] && task["dataset"].IsScalar() && !fs::path(task["dataset"].Scalar()).is_absolute())
    task["dataset"] = (fs::path(task_file).parent_path() / task["dataset"].Scalar()).string();
  const YAML::Node include = task["include"];
  if (!include) return task;
  if (!include.IsScalar()) fail(line_of(task_file, include), "include must be the path of one task file");
  if (depth >= 8) fail(line_of(task_file, include), "include chain is deeper than 8 files (does it loop?)");
  std::string parent = include.Scalar();
  if (!fs::path(parent).is_absolute()) parent = (fs::path(task_file).parent_path() / parent).string();
  if (!fs::is_regular_file(parent)) fail(line_of(task_file, include), "included task file " + parent + " not found");
  YAML::Node merged = load_task_file(parent, depth + 1);
  for (const auto& kv : task)
    if (kv.first.Scalar() != "include") merged[kv.first.Scalar()] = kv.second;
  return merged;
}

// The lm-eval-harness style task file: a dataset, templates with {{field}}, an output type.
std::unique_ptr<EvalSuite> make_yaml_task(const std::string& task_file, const YAML::Node& entry_options,
                                          const std::string& recipe_file, const std::string& path) {
  if (!fs::exists(task_file)) fail(recipe_file + ": " + path + ".suite", "task file " + task_file + " not found");
  YAML::Node task = load_task_file(task_file);
  if (!task["dataset"] && task["dataset_path"])
    fail(line_of(task_file, task["dataset_path"]),
         "dataset_path names a Hugging Face hub dataset, which posttrain does not download: set dataset: to a "
         "local JSONL file of the docs (one JSON object per line)");
  // The recipe entry's options (limit, perturbations, ...) override the task file's.
  for (const auto& kv : entry_options) task[kv.first.as<std::string>()] = kv.second;
  YamlSection options(task, "", task_file);
  const std::string name = options.get<std::string>("task", fs::path(task_file).stem().string());
  std::string dataset = options.require<std::string>("dataset");
  if (!fs::path(dataset).is_absolute()) dataset = (fs::path(task_file).parent_path() / dataset).string();
  const std::string output_type = options.require<std::string>("output_type");
  const std::string doc_to_text = options.require<std::string>("doc_to_text");
  const std::string doc_to_target = options.require<std::string>("doc_to_target");
  YAML::Node doc_to_choice = options.raw("doc_to_choice");
  const bool chat = options.get<bool>("chat", false);
  if (output_type == "multiple_choice") {
    if (!doc_to_choice || doc_to_choice.IsNull())
      options.fail_at("doc_to_choice",
                      "is required for multiple_choice (a field holding a list, or a list of templates)");
    McStyle style;
    style.labels = options.get<std::string>("labels", "none");
    style.template_index = -1;  // doc_to_text is the prompt
    if (style.labels != "letters" && style.labels != "numbers" && style.labels != "none")
      options.fail_at("labels", "must be letters, numbers or none");
    CommonSuiteOptions common = read_common_options(options, {"order", "labels", "format"}, false);
    style.shuffle = options.get<bool>("shuffle", true);
    style.seed = common.seed;
    style.axes = common.perturbations;
    common.data = dataset;
    std::vector<McItem> items;
    DataSpec spec;
    spec.train = dataset;
    for_each_jsonl_record(spec, [&](const nlohmann::json& doc, const std::string& where) {
      McItem item;
      item.id = doc.contains("id") ? (doc["id"].is_string() ? doc["id"].get<std::string>() : doc["id"].dump())
                                   : "doc-" + std::to_string(items.size());
      item.question = substitute_fields(doc_to_text, doc, where);
      if (doc_to_choice.IsSequence()) {
        for (const auto& c : doc_to_choice) item.choices.push_back(substitute_fields(c.as<std::string>(), doc, where));
      } else {
        std::string field = doc_to_choice.as<std::string>();
        if (field.rfind("{{", 0) == 0) field = field.substr(2, field.size() - 4);
        if (!doc.contains(field) || !doc[field].is_array())
          fail(where, "field \"" + field + "\" must be a list of choices");
        for (const auto& c : doc[field]) item.choices.push_back(c.is_string() ? c.get<std::string>() : c.dump());
      }
      if (item.choices.size() < 2) fail(where, "needs at least two choices");
      const std::string target = substitute_fields(doc_to_target, doc, where);
      const auto at = std::find(item.choices.begin(), item.choices.end(), target);
      if (at != item.choices.end()) {
        item.gold = static_cast<int>(at - item.choices.begin());
      } else {
        char* end = nullptr;
        const long index = std::strtol(target.c_str(), &end, 10);
        if (target.empty() || *end != '\0' || index < 0 || index >= static_cast<long>(item.choices.size()))
          fail(where, "doc_to_target gives \"" + target + "\": neither a choice nor a choice index");
        item.gold = static_cast<int>(index);
      }
      item.truth.assign(item.choices.size(), 0);
      item.truth[static_cast<size_t>(item.gold)] = 1;
      items.push_back(item);
    });
    apply_limit(items, common.limit);
    options.finish();
    auto suite = make_mc_suite(std::move(items), style, common, chat);
    suite->name = name;
    return suite;
  }
  if (output_type == "generate_until") {
    GenerationStyle style;
    style.chat = chat;
    style.metric = options.get<std::string>("metric", style.metric);
    style.until = options.get<std::vector<std::string>>("until", {"\n"});
    style.max_new_tokens = options.get<int64_t>("max_new_tokens", style.max_new_tokens);
    if (style.metric != "exact_match" && style.metric != "contains")
      options.fail_at("metric", "must be exact_match or contains");
    if (style.max_new_tokens <= 0) options.fail_at("max_new_tokens", "must be positive");
    CommonSuiteOptions common = read_common_options(options, {"format"}, false);
    common.data = dataset;
    std::vector<GenerationItem> items;
    DataSpec spec;
    spec.train = dataset;
    for_each_jsonl_record(spec, [&](const nlohmann::json& doc, const std::string& where) {
      items.push_back({"doc-" + std::to_string(items.size()), substitute_fields(doc_to_text, doc, where),
                       substitute_fields(doc_to_target, doc, where)});
    });
    apply_limit(items, common.limit);
    options.finish();
    auto suite = make_generation_suite(std::move(items), style, common);
    suite->name = name;
    return suite;
  }
  options.fail_at("output_type", "must be multiple_choice or generate_until");
}

}  // namespace

void write_eval_records(const std::string& path, const EvalRecords& records) {
  const std::string tmp = path + ".tmp";
  try {
    H5::Exception::dontPrint();
    {
      H5::H5File file(tmp, H5F_ACC_TRUNC);
      for (const auto& [name, column] : records.text) write_string_column(file, name, column);
      for (const auto& [name, column] : records.number) write_vector(file, name, column, H5::PredType::NATIVE_DOUBLE);
    }
    fs::rename(tmp, path);  // a complete file or none
  } catch (const H5::Exception& e) {
    fs::remove(tmp);
    throw UserError(path + ": cannot write eval records: " + e.getDetailMsg());
  }
}

CommonSuiteOptions read_common_options(YamlSection& options, const std::vector<std::string>& default_axes,
                                       bool data_required) {
  CommonSuiteOptions c;
  c.data = data_required ? options.require<std::string>("data") : options.get<std::string>("data", "");
  c.limit = options.get<int64_t>("limit", c.limit);
  c.seed = options.get<uint64_t>("seed", c.seed);
  c.perturbations = options.get<std::vector<std::string>>("perturbations", default_axes);
  c.gameable_margin = options.get<double>("gameable_margin", c.gameable_margin);
  c.bootstrap = options.get<int64_t>("bootstrap", c.bootstrap);
  c.batch_size = options.get<int64_t>("batch_size", c.batch_size);
  c.canary = options.get<std::string>("canary", "posttrain eval canary 5d0c8f7e-2a41-4b6e-9f3a-7c1e0b8d2f64");
  if (c.limit < 0) options.fail_at("limit", "must be >= 0 (0 = all items)");
  if (c.bootstrap < 10) options.fail_at("bootstrap", "must be at least 10 resamples");
  if (c.batch_size <= 0) options.fail_at("batch_size", "must be positive");
  if (c.gameable_margin < 0 || c.gameable_margin >= 1) options.fail_at("gameable_margin", "must be in [0, 1)");
  for (const auto& axis : c.perturbations)
    if (axis != "order" && axis != "labels" && axis != "template" && axis != "format")
      options.fail_at("perturbations", "unknown axis \"" + axis + "\" (axes: order, labels, template, format)");
  return c;
}

std::vector<std::string> generate_answers(EvalModel& model, const std::vector<std::string>& prompts,
                                          const std::vector<Presentation>& presentations, bool chat,
                                          int64_t max_new_tokens, const std::string& text_suffix) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : presentations)
    for (const auto& prompt : prompts) {
      const std::string text = format_text(prompt, p.format);
      ids.push_back(chat ? model.chat_prompt(text) : model.tokenizer().encode(text + text_suffix));
    }
  GenerationOptions options;
  options.max_new_tokens = max_new_tokens;
  options.stop_ids = {model.tokenizer().eos_id(), model.tokenizer().pad_id()};
  return model.generate(ids, options);
}

nlohmann::json score_with_interval(const std::vector<double>& values, const CommonSuiteOptions& common) {
  const Interval ci = bootstrap_interval(values, static_cast<int>(common.bootstrap), common.seed);
  return {{"value", mean_of(values)}, {"ci95", {ci.low, ci.high}}, {"n", values.size()}};
}

void register_suite(const std::string& name, SuiteFactory factory, const std::string& description) {
  registry()[name] = {std::move(factory), description};
}

std::vector<std::string> suite_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : registry()) names.push_back(name);
  return names;
}

std::string suite_description(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? "" : it->second.description;
}

std::unique_ptr<EvalSuite> make_suite(const std::string& name_or_file, const YAML::Node& options,
                                      const std::string& file, const std::string& path) {
  const auto ext = fs::path(name_or_file).extension();
  if (ext == ".yaml" || ext == ".yml") return make_yaml_task(name_or_file, options, file, path);
  auto it = registry().find(name_or_file);
  if (it == registry().end())
    fail(file + ": " + path + ".suite",
         "unknown eval suite \"" + name_or_file + "\" (known: " + known_suites() + "; or a YAML task file)");
  YamlSection section(options, path, file);
  auto suite = it->second.factory(section);
  section.finish();
  suite->name = name_or_file;
  return suite;
}

double ResponseScorer::aggregate(const std::vector<size_t>& items, const std::vector<double>& scores) const {
  (void)items;
  return mean_of(scores);
}

std::string suite_version(const std::string& name, const YAML::Node& options, const EvalSuite& suite) {
  std::map<std::string, std::string> sorted;  // the order keys were written in is not the suite
  if (options && options.IsMap())
    for (const auto& kv : options) sorted[kv.first.as<std::string>()] = YAML::Dump(kv.second);
  std::string text = name + "\n";
  for (const auto& [key, value] : sorted) text += key + "=" + value + "\n";
  if (const ResponseScorer* scorer = suite.response_scorer()) {
    for (size_t i = 0; i < scorer->size(); ++i) text += scorer->item_id(i) + "\t" + scorer->prompt(i) + "\n";
  } else if (const ChoiceScorer* choices = suite.choice_scorer()) {
    for (size_t i = 0; i < choices->size(); ++i)
      text += choices->item_id(i) + "\t" + choices->context(i) + "\t" +
              nlohmann::json(choices->continuations(i)).dump() + "\t" + std::to_string(choices->credited(i)) + "\n";
  } else {
    for (const auto& item : suite.item_texts()) text += item + "\n";
  }
  return sha256_hex(text);
}

}  // namespace posttrain
