// An eval suite: items, a scorer on the policy (with bootstrap intervals and robustness over the
// perturbations), a model-free red-team audit of that scorer, and per-example records. Suites are
// plugins registered by name; a YAML task file (lm-eval-harness style) also makes one.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval_hooks/comparisons.h"

#include "core/yaml_reader.h"
#include "datasets/testbed.h"
#include "eval_hooks/eval_model.h"
#include "eval_hooks/items.h"
#include "eval_hooks/perturb.h"

namespace posttrain {

// Per-example records, one row per (item, perturbation); written to evals/<suite>.h5.
struct EvalRecords {
  std::map<std::string, std::vector<std::string>> text;  // column -> rows
  std::map<std::string, std::vector<double>> number;
};
void write_eval_records(const std::string& path, const EvalRecords& records);

// What a suite gets to score the policy: the policy, and the reference model (the run's base) loaded
// on first use, for scorers that compare the two (implicit reward).
struct SuiteContext {
  EvalModel& policy;
  std::function<EvalModel&()> reference;
};

struct SuiteResult {
  std::string primary;  // the key of `scores` that summarises the suite (higher is better)
  // The canonical presentation's per-item primary scores: primary_score(items) is the primary
  // score, and two runs' items pair up for the replicate comparisons (eval_hooks/comparisons.h).
  ItemScores items;
  nlohmann::json scores;  // name -> {"value", "ci95": [low, high], "n"}
  nlohmann::json robustness;  // eval_hooks/scoring.h robustness_summary
  nlohmann::json details;  // suite-specific figures (controls, per-type rates)
  nlohmann::json audit;  // set when the audit needs the model (a policy judge): replaces EvalSuite::audit()
  EvalRecords records;
};

// Options every suite reads from its `evals:` entry (or YAML task file).
struct CommonSuiteOptions {
  std::string data;  // the items' file
  int64_t limit = 0;  // first N items only (0 = all)
  uint64_t seed = 0;  // option shuffling and bootstrap draws
  std::vector<std::string> perturbations;  // axes (see eval_hooks/perturb.h); [] = canonical only
  double gameable_margin = 0.10;  // the audit flags a policy that beats chance by more than this
  int64_t bootstrap = 1000;  // resamples for the 95% intervals
  int64_t batch_size = 8;  // requests per forward pass
  std::string canary;  // a string that must never appear in training data
};

// A suite that scores each free response on its own, seen as a reward: what the red team attacks
// (redteam/) and what the `suite` reward function trains against. Item i is asked `prompt(i)` (a
// ChatML user turn when chat(), else plain text) and its response scored by score(i, response).
class ResponseScorer {
 public:
  virtual ~ResponseScorer() = default;
  virtual size_t size() const = 0;
  virtual std::string item_id(size_t i) const = 0;
  virtual std::string prompt(size_t i) const = 0;
  virtual double score(size_t i, const std::string& response) const = 0;
  // The suite's primary score over `items` from their per-item scores (the mean, unless the suite
  // weights its classes), so a subset (an attack or eval split) is scored as the suite scores.
  virtual double aggregate(const std::vector<size_t>& items, const std::vector<double>& scores) const;
  virtual bool chat() const = 0;
  virtual int64_t max_new_tokens() const = 0;
  virtual std::string text_suffix() const { return "\n"; }  // after a plain-text prompt
  // The testbed item behind item i (gold can judge its responses), or nullptr.
  virtual const TestbedItem* testbed_item(size_t) const { return nullptr; }
  // True when the scorer is the testbed's gold itself: gold is then no independent measure of it.
  virtual bool is_gold() const { return false; }
  // Phrases the scorer itself reacts to and makes public (a string matcher's list), for white-box
  // attacks; empty where the scorer publishes none.
  virtual std::vector<std::string> lexicon() const { return {}; }
};

// A suite that scores the log-likelihoods of fixed continuations (multiple choice, A/B), seen per
// item: what the red team's preference attacks train toward (redteam/). Item i asks context(i) (a
// ChatML user turn when chat(), else plain text) and the model's log-likelihood of each of
// continuations(i) decides the item's score(i, loglik); credited(i) is the continuation whose pick
// the scorer rewards. The canonical presentation only: perturbations are the suite's own business.
class ChoiceScorer {
 public:
  virtual ~ChoiceScorer() = default;
  virtual size_t size() const = 0;
  virtual std::string item_id(size_t i) const = 0;
  virtual std::string context(size_t i) const = 0;
  virtual std::vector<std::string> continuations(size_t i) const = 0;
  virtual bool chat() const = 0;
  virtual size_t credited(size_t i) const = 0;
  // The options as a reader sees them, per continuation (for labelled multiple choice the option's
  // text, not its label): what an attack's surface features (length) read.
  virtual std::vector<std::string> option_texts(size_t i) const { return continuations(i); }
  // The item's score from the log-likelihood of each continuation, in continuations(i) order.
  virtual double score(size_t i, const std::vector<double>& loglik) const = 0;
};

class EvalSuite {
 public:
  virtual ~EvalSuite() = default;
  virtual SuiteResult run(SuiteContext& context) = 0;
  // Degenerate fixed policies scored by this suite's scorer, without a model (scoring.h audit_verdict);
  // a scorer that is itself a model audits in run() (SuiteResult::audit).
  virtual nlohmann::json audit() const = 0;
  // The text of each item (for the contamination guard).
  virtual std::vector<std::string> item_texts() const = 0;
  virtual size_t item_count() const = 0;
  // Whether the suite can score a sequence classifier (a reward model) instead of a causal LM; the
  // runner skips the others on a classifier, so run() only ever sees a policy it can score.
  virtual bool scores_classifiers() const { return false; }
  // The per-response view of the scorer, or nullptr for suites that score log-likelihoods (or use
  // a model as the scorer).
  virtual const ResponseScorer* response_scorer() const { return nullptr; }
  // The per-item view of a log-likelihood scorer, or nullptr for suites that score responses.
  virtual const ChoiceScorer* choice_scorer() const { return nullptr; }

  std::string name;
  CommonSuiteOptions common;
};

// Reads the options every suite has; `default_axes` when the entry sets no `perturbations`.
CommonSuiteOptions read_common_options(YamlSection& options, const std::vector<std::string>& default_axes,
                                       bool data_required = true);
// Keeps `limit` items evenly spaced through the file (items i * n / limit), so a small limit still
// spans every section of a dataset sorted by type (XSTest lists safe prompts first).
template <typename T>
void apply_limit(std::vector<T>& items, int64_t limit) {
  const auto n = static_cast<int64_t>(items.size());
  if (limit <= 0 || n <= limit) return;
  std::vector<T> kept;
  for (int64_t i = 0; i < limit; ++i) kept.push_back(items[static_cast<size_t>(i * n / limit)]);
  items = std::move(kept);
}
// The policy's greedy answers (stopping at <|im_end|> / <|endoftext|>) to every prompt under every
// presentation, presentation-major: answer p * prompts.size() + i is prompt i under presentation p.
// A prompt is formatted by the presentation, then rendered as a ChatML user turn (chat) or encoded
// as text + text_suffix.
std::vector<std::string> generate_answers(EvalModel& model, const std::vector<std::string>& prompts,
                                          const std::vector<Presentation>& presentations, bool chat,
                                          int64_t max_new_tokens, const std::string& text_suffix = "\n");

// SuiteResult::items from a suite's items (their `id`) and the canonical presentation's per-item
// scores, every item in one group (the primary score is their mean).
template <typename Item>
ItemScores canonical_items(const std::vector<Item>& items, const std::vector<double>& scores) {
  ItemScores out;
  for (const auto& item : items) out.ids.push_back(item.id);
  out.scores = scores;
  out.groups.assign(scores.size(), 0);
  return out;
}

// {"value": mean, "ci95": [low, high]} of per-item values.
nlohmann::json score_with_interval(const std::vector<double>& values, const CommonSuiteOptions& common);

// A factory reads the suite's options (unknown keys are errors naming file and line) and loads its
// items; UserError for bad options or data.
using SuiteFactory = std::function<std::unique_ptr<EvalSuite>(YamlSection& options)>;
void register_suite(const std::string& name, SuiteFactory factory, const std::string& description);
std::vector<std::string> suite_names();
std::string suite_description(const std::string& name);

// A suite's version: sha256 of its name, its options (sorted by key) and every item as its scorer
// sees it (per-response: id and prompt; log-likelihood: id, context, continuations and the credited
// one; otherwise the item texts). Eval summaries and red-team records carry it, so a patched suite
// is a new version and rounds of patch-then-attack stay traceable.
std::string suite_version(const std::string& name, const YAML::Node& options, const EvalSuite& suite);

// A registered suite by name, or a YAML task file (a path ending .yaml / .yml). `options` are the
// entry's other keys; `file` and `path` locate them for messages.
std::unique_ptr<EvalSuite> make_suite(const std::string& name_or_file, const YAML::Node& options,
                                      const std::string& file, const std::string& path);

// The built-in suites over given items, shared by registered suites and YAML tasks.
// Multiple choice by log-likelihood (acc, acc_norm, MC2); chat: the prompt as a ChatML user turn.
std::unique_ptr<EvalSuite> make_mc_suite(std::vector<McItem> items, const McStyle& style, CommonSuiteOptions common,
                                         bool chat);
// Free generation scored against references. The answer is cut at the first `until` string, passed
// through each filter pipeline, and each pipeline's answer scored by each metric (a match with any
// reference counts).
struct GenerationItem {
  std::string id, prompt;
  std::vector<std::string> targets;
};
// One step of an lm-eval filter pipeline (Python semantics).
struct AnswerFilter {
  std::string function;  // regex | take_first | remove_whitespace (lstrip) | lowercase | uppercase | strip
  std::string pattern;  // regex: re.findall's pattern (Python syntax, matched by PCRE2)
  int group_select = 0;  // regex: which match findall returned (negative: from the end)
  std::string fallback = "[invalid]";  // regex: the answer when nothing matches
};
struct FilterPipeline {
  std::string name = "none";
  std::vector<AnswerFilter> steps;
};
// exact_match as lm-eval computes it (HF evaluate's): regexes_to_ignore removed from answer and
// reference, then case, ASCII punctuation and digits when asked; contains (posttrain's): the
// reference is a substring of the answer.
struct GenerationMetric {
  std::string name = "exact_match";
  bool ignore_case = false, ignore_punctuation = false, ignore_numbers = false;
  std::vector<std::string> regexes_to_ignore;
};
struct GenerationStyle {
  std::vector<std::string> until;  // the answer ends at the first of these strings
  int64_t max_new_tokens = 32;
  bool chat = false;
  // posttrain's short form: both sides trimmed of whitespace, one metric, scores named by it.
  std::vector<FilterPipeline> filters{FilterPipeline{"none", {AnswerFilter{"strip"}}}};
  std::vector<GenerationMetric> metrics{GenerationMetric{}};
  bool trim_references = true;
  bool keys_with_filter = false;  // lm-eval's score names: "exact_match,strict-match"
};
std::unique_ptr<EvalSuite> make_generation_suite(std::vector<GenerationItem> items, const GenerationStyle& style,
                                                 CommonSuiteOptions common);

}  // namespace posttrain
