#include "eval_hooks/suite.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/files.h"
#include "datasets/h5_io.h"
#include "datasets/sft_data.h"
#include "eval_hooks/lm_eval_task.h"
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
  if (ext == ".yaml" || ext == ".yml") return make_lm_eval_suite(read_lm_eval_task(name_or_file, options, file, path));
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
