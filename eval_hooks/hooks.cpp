#include "eval_hooks/hooks.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "eval_hooks/contamination.h"
#include "models/checkpoint.h"

namespace fs = std::filesystem;

namespace posttrain {

struct EvalRunner::Reference {
  QwenForCausalLM model{nullptr};
  std::unique_ptr<EvalModel> eval;
};

EvalRunner::EvalRunner(EvalEnvironment env, const std::vector<EvalSpec>& specs) : env_(std::move(env)), specs_(specs) {
  std::unique_ptr<TrainingNgrams> training;  // hashed once for every suite
  if (!env_.train_data.empty()) training = std::make_unique<TrainingNgrams>(training_text(env_.train_data));
  for (const auto& spec : specs_) {
    suites_.push_back(make_suite(spec.suite, spec.options, spec.file, spec.path));
    const EvalSuite& suite = *suites_.back();
    contamination_.push_back(training ? training->report(suite.item_texts(), suite.common.canary)
                                      : nlohmann::json{{"checked", false}});
    const std::string data = suite.common.data;
    data_sha256_.push_back(!data.empty() && fs::exists(data) ? sha256_file(data) : "");
    versions_.push_back(suite_version(spec.suite, spec.options, suite));
  }
  audits_.resize(suites_.size());
  tokenizer_ = Tokenizer::from_dir(env_.tokenizer_dir);
}

EvalRunner::~EvalRunner() = default;

const nlohmann::json& EvalRunner::model_free_audit(size_t i) {
  if (audits_[i].is_null()) audits_[i] = suites_[i]->audit();
  return audits_[i];
}

EvalModel& EvalRunner::reference() {
  if (!reference_) {
    if (env_.reference_dir.empty())
      throw UserError("this suite compares the policy with a reference model: pass --reference DIR");
    reference_ = std::make_unique<Reference>();
    LoadOptions load;
    load.device = parse_device(env_.device);
    reference_->model = load_model(env_.reference_dir, load);
    reference_->model->eval();
    reference_->eval = std::make_unique<EvalModel>(*reference_->model, *tokenizer_, env_.dist);
  }
  return *reference_->eval;
}

std::string eval_summary_line(const nlohmann::json& summary) {
  if (summary.contains("skipped"))
    return summary.value("suite", std::string("?")) + " skipped: " + summary["skipped"].get<std::string>();
  std::ostringstream line;
  line << std::fixed << std::setprecision(3) << summary["suite"].get<std::string>() << " (" << summary["items"]
       << " items)";
  for (const auto& [name, score] : summary["scores"].items()) {
    if (!score["value"].is_number()) {  // no items of that kind (NaN is written as null)
      line << "  " << name << " -";
      continue;
    }
    line << "  " << name << " " << score["value"].get<double>();
    if (score["ci95"][0].is_number())
      line << " [" << score["ci95"][0].get<double>() << ", " << score["ci95"][1].get<double>() << "]";
  }
  if (summary["robustness"].contains("worst"))
    line << "  worst " << summary["robustness"]["worst"].get<double>() << "  consistency "
         << summary["robustness"]["consistency"].get<double>();
  line << "  gameable " << (summary["audit"].value("gameable", false) ? "YES" : "no");
  return line.str();
}

nlohmann::json EvalRunner::run_suite(size_t i, QwenForCausalLMImpl& policy, int64_t step, const std::string& subdir) {
  EvalSuite& suite = *suites_[i];
  if (policy.is_classifier() && !suite.scores_classifiers()) {  // e.g. a reward-model variant of a matrix
    if (env_.dist->rank() == 0)
      std::cerr << "posttrain: eval " << suite.name
                << " skipped: it scores a causal LM and the policy is a reward model\n";
    return {{"suite", suite.name}, {"step", step}, {"skipped", "the policy is a sequence classifier"}};
  }
  const auto started = std::chrono::steady_clock::now();
  if (env_.dist->rank() == 0)
    std::cerr << "posttrain: eval " << suite.name << " (" << suite.item_count() << " items) at step " << step << "\n";
  EvalModel model(policy, *tokenizer_, env_.dist, suite.common.batch_size);
  SuiteContext context{model, [this]() -> EvalModel& { return reference(); }};
  SuiteResult result = suite.run(context);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  nlohmann::json summary = {{"suite", suite.name},
                            {"step", step},
                            {"items", suite.item_count()},
                            {"data", suite.common.data},
                            {"data_sha256", data_sha256_[i]},
                            {"version", versions_[i]},
                            {"primary", result.primary},
                            {"scores", result.scores},
                            {"robustness", result.robustness},
                            {"audit", result.audit.is_null() ? model_free_audit(i) : result.audit},
                            {"contamination", contamination_[i]},
                            {"world_size", env_.dist->world_size()},
                            {"seconds", seconds}};
  if (!result.details.is_null()) summary["details"] = result.details;
  if (!result.items.ids.empty())  // what the report pairs between runs (seed replicates, methods)
    summary["item_scores"] = {
        {"ids", result.items.ids}, {"scores", result.items.scores}, {"groups", result.items.groups}};
  if (env_.dist->rank() == 0) {
    const fs::path dir = fs::path(env_.out_dir) / "evals" / subdir;
    fs::create_directories(dir);
    // A suite named by a task file path is stored under its task name.
    const std::string stem = fs::path(suite.name).filename().string();
    write_eval_records((dir / (stem + ".h5")).string(), result.records);
    write_file_atomic((dir / (stem + ".json")).string(), summary.dump(2) + "\n");
    if (env_.log_metrics) {
      std::cerr << "posttrain: " << eval_summary_line(summary) << "\n";
      nlohmann::json record = {{"step", step}};
      const std::string prefix = "eval/" + stem + "/";
      for (const auto& [name, score] : result.scores.items()) record[prefix + name] = score["value"];
      for (const char* key : {"worst", "spread", "consistency"})
        if (result.robustness.contains(key)) record[prefix + key] = result.robustness[key];
      record[prefix + "gameable"] = summary["audit"].value("gameable", false);
      env_.log_metrics(record);
    }
  }
  return summary;
}

void EvalRunner::on_policy(QwenForCausalLMImpl& policy, int64_t step, EvalPoint when) {
  for (size_t i = 0; i < suites_.size(); ++i) {
    const EvalSpec& spec = specs_[i];
    char step_dir[32];
    std::snprintf(step_dir, sizeof(step_dir), "step-%06lld", static_cast<long long>(step));
    if (when != EvalPoint::kAfterRun && spec.after_run && step == env_.total_steps) continue;  // not twice
    if (when == EvalPoint::kAfterRun && spec.after_run) {
      run_suite(i, policy, step, "");
    } else if (when == EvalPoint::kStep && spec.every_n_steps > 0 && step % spec.every_n_steps == 0) {
      run_suite(i, policy, step, step_dir);
    } else if (when == EvalPoint::kCheckpoint && spec.on_checkpoint &&
               !(spec.every_n_steps > 0 && step % spec.every_n_steps == 0)) {  // not twice for one step
      run_suite(i, policy, step, step_dir);
    }
  }
}

}  // namespace posttrain
