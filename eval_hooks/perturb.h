// The perturbation engine: the presentations a suite's items are scored under. Multiple-choice items
// vary along four axes, one at a time from the canonical presentation: option order (cyclic shifts),
// label set (A/B/C, 1/2/3, none), prompt template (several phrasings) and formatting (casing,
// whitespace, separator). Text prompts (refusal, A/B, pairs) vary in formatting only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval_hooks/items.h"

namespace posttrain {

struct Presentation {
  std::string id = "canonical";  // e.g. "order+2", "labels=numbers", "template=1", "format=lowercase"
  std::string axis = "canonical";  // canonical | order | labels | template | format
  int shift = 0;  // extra cyclic shift of the option order
  std::string labels = "letters";  // letters | numbers | none
  int template_index = 0;  // index into the phrasings; -1 = the question as given (YAML tasks)
  std::string format = "plain";  // plain | lowercase | double_newline | paren_separator
};

// How a suite presents its multiple-choice items.
struct McStyle {
  std::string labels = "letters";  // the canonical label set
  int template_index = 0;  // the canonical phrasing (-1: the question text is the whole prompt)
  bool shuffle = true;  // permute each item's options (seeded by item id), so the gold is not always first
  uint64_t seed = 0;
  int max_shifts = 0;  // order perturbations: shifts 1 .. max_shifts-1; 0 = every cyclic shift
  std::vector<std::string> axes{"order", "labels", "template", "format"};  // perturbation axes in use
  // Before an unlabelled choice's text in its continuation (lm-eval's target_delimiter).
  std::string target_delimiter = " ";
  // acc_norm divides by the choice's length in characters, as lm-eval does, rather than by the
  // continuation's bytes.
  bool norm_by_choice_characters = false;
  std::string primary = "acc";  // the suite's primary score and what its red-team view credits: acc | acc_norm
};

// The canonical presentation followed by each perturbation, one axis at a time. `most_choices`: the
// largest option count among the items (every cyclic shift of it is an order perturbation; items with
// fewer options wrap around).
std::vector<Presentation> mc_presentations(const McStyle& style, int most_choices);
// Formatting variants of a plain text prompt: canonical + the format axis (when in `axes`).
std::vector<Presentation> text_presentations(const std::vector<std::string>& axes);

struct RenderedMc {
  std::string context;  // the prompt up to the answer
  std::vector<std::string> continuations;  // per displayed position: " B" or " <choice text>"
  std::vector<int> order;  // order[k] = the item's choice index displayed at position k
  int gold_position = 0;  // where the gold answer is displayed
};
RenderedMc render_mc(const McItem& item, const Presentation& presentation, const McStyle& style);

// A prompt under a formatting variant (plain, lowercase, double_newline; others leave it unchanged).
std::string format_text(const std::string& text, const std::string& format);

// Number of phrasings available for multiple-choice prompts.
int mc_template_count();

}  // namespace posttrain
