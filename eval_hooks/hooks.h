// Eval hooks: the suites of a recipe's `evals:` run on the policy in memory (after the run, every K
// steps, on checkpoints), sharded over ranks; rank 0 writes evals/<suite>.json (scores with bootstrap
// intervals, robustness, audit, contamination, item count, data hash) and evals/<suite>.h5
// (per-example records), and appends the summary to metrics.jsonl. `posttrain eval` runs the same
// suites on a saved model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/recipe.h"
#include "eval_hooks/suite.h"
#include "launch/distributed.h"
#include "models/qwen.h"
#include "models/tokenizer.h"

namespace posttrain {

struct EvalEnvironment {
  Distributed* dist = nullptr;
  std::string out_dir;  // results go to <out_dir>/evals/
  std::string tokenizer_dir;
  std::string reference_dir;  // the model implicit rewards compare against (a run's base)
  std::string device = "cpu";
  std::vector<std::string> train_data;  // files checked by the contamination guard
  int64_t total_steps = 0;  // the run's last step: its every_n_steps / on_checkpoint evals defer to after_run
  // Appends a record to metrics.jsonl (rank 0 only); empty for standalone evals.
  std::function<void(const nlohmann::json&)> log_metrics;
};

enum class EvalPoint { kStep, kCheckpoint, kAfterRun };

class EvalRunner {
 public:
  // Builds every suite (UserError naming the recipe entry for a bad one) and runs the contamination
  // guard once per suite.
  EvalRunner(EvalEnvironment env, const std::vector<EvalSpec>& specs);
  ~EvalRunner();

  // Runs the suites due at this point; `step` counts completed optimizer steps.
  void on_policy(QwenForCausalLMImpl& policy, int64_t step, EvalPoint when);
  // Runs suite i now; returns its summary (every rank gets it; rank 0 writes it under `subdir`).
  nlohmann::json run_suite(size_t i, QwenForCausalLMImpl& policy, int64_t step, const std::string& subdir);
  size_t size() const { return suites_.size(); }

 private:
  EvalModel& reference();
  const nlohmann::json& model_free_audit(size_t i);

  EvalEnvironment env_;
  // Read once from env_.tokenizer_dir after the suites are built (a bad suite is reported first),
  // then shared by every eval of the run.
  std::optional<Tokenizer> tokenizer_;
  std::vector<EvalSpec> specs_;
  std::vector<std::unique_ptr<EvalSuite>> suites_;
  std::vector<nlohmann::json> contamination_;
  std::vector<nlohmann::json> audits_;  // each suite's model-free audit, computed on first use (constant)
  std::vector<std::string> data_sha256_;
  std::vector<std::string> versions_;  // per suite: suite_version (eval_hooks/suite.h)
  struct Reference;
  std::unique_ptr<Reference> reference_;
};

// One line for people: suite, items, each score with its interval, worst case, consistency, gameable.
std::string eval_summary_line(const nlohmann::json& summary);

}  // namespace posttrain
