// lm-eval-harness task files: the harness's YAML keys with its semantics (templates rendered by
// core/jinja.h as lm-eval's jinja2 environment renders them, few-shot contexts drawn as its sampler
// draws them), read into requests for posttrain's multiple-choice and generation suites. Python
// hooks (!function, process_docs, process_results) are refused, as is any key posttrain does not
// read: a task never runs with part of it ignored. docs/evals.md lists the keys.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "eval_hooks/suite.h"

namespace posttrain {

// One evaluated doc as the harness sends it to a model.
struct LmEvalRequest {
  std::string id;  // the doc's "id" field, else doc-<index>
  std::string context;  // description + few-shot examples + doc_to_text
  std::vector<std::string> choices;  // multiple_choice; continuations are target_delimiter + choice
  int gold = -1;  // multiple_choice: the gold choice
  std::vector<std::string> targets;  // generate_until: the references (a match with any counts)
};

struct LmEvalTask {
  std::string name;
  std::string output_type;  // multiple_choice | generate_until
  std::string target_delimiter = " ";
  std::vector<LmEvalRequest> requests;  // every eval doc, in file order (limit is applied later)
  McStyle mc_style;
  GenerationStyle generation;
  CommonSuiteOptions common;
  bool chat = false;
};

// Reads a task file: its include chain merged (the including file's keys win), the recipe entry's
// options over it. UserError naming file:line for a bad key or value, file:line of the data for a
// bad doc.
LmEvalTask read_lm_eval_task(const std::string& task_file, const YAML::Node& entry_options,
                             const std::string& recipe_file, const std::string& path);

// The suite that scores the task's requests.
std::unique_ptr<EvalSuite> make_lm_eval_suite(LmEvalTask task);

}  // namespace posttrain
