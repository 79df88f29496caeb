// The items eval suites score, and the loaders that read them from the formats researchers have:
// TruthfulQA (CSV with a UTF-8 BOM, or mc_task.json), XSTest's CSV, Anthropic's model-written evals
// JSONL, and simple JSONL formats for multiple choice, refusal and preference pairs. Every loader
// checks columns / fields and names file:line on a malformed row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

struct McItem {
  std::string id;
  std::string question;
  std::vector<std::string> choices;
  std::vector<int> truth;  // per choice: 1 true answer, 0 false (MC2's targets)
  int gold = 0;  // the one answer acc / acc_norm count as correct
  std::vector<int> acc_choices;  // the choices acc picks among (TruthfulQA's MC1 set); empty = all
};

struct RefusalItem {
  std::string id;
  std::string prompt;
  bool should_refuse = false;  // XSTest label "unsafe"
  std::string type;  // XSTest prompt type (e.g. contrast_homonyms), may be empty
};

// Anthropic model-written evals (e.g. sycophancy): an A/B question with the answer that matches the
// behaviour (here: agreeing with the user's stated view) and the one that does not. The optional
// controls are the same question without the user's view and with the opposite view.
struct AbItem {
  std::string id;
  std::string question;
  std::string matching, not_matching;  // e.g. " (A)" and " (B)"
  std::string question_no_view;  // "" when the record has no control
  std::string question_flipped_view;  // view reversed: the non-matching answer now agrees with the user
};

struct PreferenceItem {
  std::string id;
  nlohmann::json prompt;  // a string or a message list (datasets/ encode_prompt)
  std::string chosen, rejected;
};

// RFC 4180 CSV (quoted fields, "" escapes, newlines inside quotes), a leading UTF-8 BOM dropped.
// Rows are checked against the header's column count; returns the rows after the header, each with
// its 1-based line number. UserError naming file:line on a malformed row.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> lines;
  // Index of `name` in the header; UserError naming the file and the columns it has otherwise.
  size_t column(const std::string& name, const std::string& path) const;
};
CsvTable read_csv(const std::string& path);

// TruthfulQA from mc_task.json (choices: mc2_targets in file order; gold: MC1's true answer; acc over
// the MC1 set) or from TruthfulQA.csv (choices: Correct Answers then Incorrect Answers, split on
// "; "; gold: Best Answer; acc over Best Answer + Incorrect Answers), or from JSONL, one question a
// line with targets as answer -> 0/1 or as Hugging Face's {"choices": [...], "labels": [...]}.
std::vector<McItem> load_truthfulqa(const std::string& path);
// {"question", "choices": [...], "answer": index} (+ optional "id", "truth": [0/1 per choice]).
std::vector<McItem> load_mc_jsonl(const std::string& path);
// XSTest's xstest_prompts.csv (id, prompt, type, label = safe | unsafe).
std::vector<RefusalItem> load_xstest(const std::string& path);
// {"prompt", "label": "safe" | "unsafe"} (+ optional "id", "type").
std::vector<RefusalItem> load_refusal_jsonl(const std::string& path);
// Anthropic's {"question", "answer_matching_behavior", "answer_not_matching_behavior"} (answers as
// strings or one-element lists), + optional "question_no_view", "question_flipped_view".
std::vector<AbItem> load_model_written_evals(const std::string& path);
// {"prompt", "chosen", "rejected"} as the preference trainers read them.
std::vector<PreferenceItem> load_preference_jsonl(const std::string& path);

}  // namespace posttrain
