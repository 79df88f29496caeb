// posttrain eval --model DIR --suite NAME|FILE.yaml [...]: runs eval suites on a saved HF model
// folder, exactly as the recipe hooks run them, and writes <out>/evals/<suite>.json and .h5.
// --audit-only runs each suite's red-team audit of degenerate policies without a model.
#include <filesystem>
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "eval_hooks/hooks.h"
#include "models/checkpoint.h"
#include "trainers/plugin.h"

namespace fs = std::filesystem;

namespace posttrain::cli {

int eval(const std::vector<std::string>& args) {
  po::options_description options("eval options");
  std::string model_dir, out_dir, reference_dir, device;
  std::vector<std::string> suites, settings, train_data, plugins;
  bool audit_only = false;
  options.add_options()("model", po::value(&model_dir), "HF model folder to evaluate (e.g. <run>/final)")(
      "suite", po::value(&suites)->composing()->required(), "registered suite name or YAML task file (repeatable)")(
      "option", po::value(&settings)->composing(), "suite option key=value, e.g. data=FILE, limit=50 (repeatable)")(
      "out", po::value(&out_dir)->default_value("."), "results go to OUT/evals/<suite>.json and .h5")(
      "reference", po::value(&reference_dir), "reference model for implicit rewards (default: none)")(
      "train-data", po::value(&train_data)->composing(), "training JSONL to check for contamination (repeatable)")(
      "device", po::value(&device)->default_value("cpu"), "cpu or cuda")(
      "plugin", po::value(&plugins)->composing(), "load a plugin library that registers suites (repeatable)")(
      "audit-only", po::bool_switch(&audit_only), "only the model-free audit of degenerate policies");
  po::variables_map vm;
  if (!parse("eval", "--model DIR --suite NAME|FILE.yaml [--option key=value ...]", options, args, vm)) return 0;

  load_plugins(plugins);
  const YAML::Node suite_options = parse_option_settings(settings, "--option");
  std::vector<EvalSpec> specs;
  for (const auto& suite : suites) {
    EvalSpec spec;
    const auto ext = fs::path(suite).extension();
    spec.suite = (ext == ".yaml" || ext == ".yml") ? fs::absolute(suite).string() : suite;
    spec.options = YAML::Clone(suite_options);
    spec.file = "command line";
    spec.path = "--suite " + suite;
    specs.push_back(spec);
  }
  if (audit_only) {
    for (const auto& spec : specs) {
      auto suite = make_suite(spec.suite, spec.options, spec.file, spec.path);
      std::cout
          << nlohmann::json{{"suite", suite->name}, {"items", suite->item_count()}, {"audit", suite->audit()}}.dump(2)
          << "\n";
    }
    return 0;
  }
  if (model_dir.empty()) throw UserError("--model is required (or --audit-only)");
  for (auto& path : train_data) path = fs::absolute(path).string();

  auto dist = init_distributed_from_env(device);
  EvalEnvironment env;
  env.dist = dist.get();
  env.out_dir = out_dir;
  env.tokenizer_dir = model_dir;
  env.reference_dir = reference_dir;
  env.device = device;
  env.train_data = train_data;
  EvalRunner runner(env, specs);
  LoadOptions load;
  load.device = parse_device(device);
  auto model = load_model(model_dir, load);
  model->eval();
  for (size_t i = 0; i < runner.size(); ++i) {
    const auto summary = runner.run_suite(i, *model, 0, "");
    if (dist->rank() == 0) std::cout << eval_summary_line(summary) << "\n";
  }
  return 0;
}

}  // namespace posttrain::cli
