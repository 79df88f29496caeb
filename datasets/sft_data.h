// SFT data: JSONL in TRL's formats -> token ids + loss masks, stored as a tokenized HDF5 shard that is
// reused while the tokenizer and the source file are unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/recipe.h"
#include "models/tokenizer.h"

namespace posttrain {

// Ragged examples: example i is tokens[offsets[i] .. offsets[i+1]); loss_mask marks the tokens the
// model is trained to produce (assistant turns / the completion, and their end token).
struct TokenizedDataset {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets{0};
  std::vector<uint8_t> loss_mask;
  std::vector<uint8_t> labels;  // "unpaired" data only: per example, 1 desirable / 0 undesirable
  // "preference" data only: per pair, P(chosen is better) from the records' optional "preference"
  // field (soft labels, e.g. an AI judge's); empty when no record has one (every label is hard).
  std::vector<float> preferences;
  int64_t truncated = 0;  // examples cut to max_length
  int64_t skipped = 0;  // malformed records skipped (only with skip_bad_records)

  int64_t size() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t length(int64_t i) const { return offsets[i + 1] - offsets[i]; }
};

// One JSONL line as JSON; a UserError naming `where` (file:line) when it is not valid JSON or when an
// object in it repeats a key (the parser would keep one of the values in silence). The ordered form
// keeps the file's key order, as Python's dicts do: chat templates see messages and tool arguments in
// that order (tojson prints it).
nlohmann::json parse_json_record(const std::string& line, const std::string& where);
nlohmann::ordered_json parse_ordered_json_record(const std::string& line, const std::string& where);

// Calls `use` with each non-blank line of spec.train parsed as JSON and its "file:line". A UserError
// from parsing or from `use` propagates, or (skip_bad_records) is reported, counted and skipped.
// Returns the number skipped.
int64_t for_each_jsonl_record(const DataSpec& spec,
                              const std::function<void(const nlohmann::json&, const std::string&)>& use);
int64_t for_each_ordered_jsonl_record(
    const DataSpec& spec, const std::function<void(const nlohmann::ordered_json&, const std::string&)>& use);

// TRL's dataset formats (docs/recipes.md shows each), detected from the keys as TRL detects them.
// Messages are objects {"role", "content", ...} passed whole to the model's chat template (models/
// chat.h): tool_calls (content may then be absent), reasoning_content, name, tool_call_id; a record's
// "tools" (a list of schemas, or a string holding one) go to the template too.

// SFT: {"text"} (language modelling: every token, then EOS), {"messages"[, "tools"]} (loss on the
// assistant turns), {"prompt", "completion"[, "tools"]} as strings (loss on completion + EOS) or
// message lists (loss on the completion's assistant turns; it may hold several messages).
// A malformed line is a UserError naming file:line and the field, unless skip_bad_records.
TokenizedDataset tokenize_sft_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// Preference pairs: {"prompt", "chosen", "rejected"} (explicit prompt) or {"chosen", "rejected"}
// (implicit prompt: the longest common prefix of the two, split as TRL's extract_prompt splits it:
// whole messages for conversations, characters for texts, a space before the split going to the
// responses). Pair i becomes examples 2i (prompt + chosen) and 2i+1 (prompt + rejected), each masked
// as encode_prompt_response masks it. An optional "preference" number in [0, 1] is a soft label
// (P(chosen is better)); records without it count 1.
TokenizedDataset tokenize_preference_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// A prompt for generation: a string (encoded as is) or a message list rendered with the assistant
// generation prompt; tools (null or a list of schemas) go to the chat template. UserError naming `where`.
// template_kwargs: more template variables (DataSpec::chat_template_kwargs, parsed), an object.
std::vector<int32_t> encode_prompt(const nlohmann::ordered_json& prompt, const Tokenizer& tokenizer,
                                   const std::string& where, const nlohmann::ordered_json& tools,
                                   const nlohmann::ordered_json& template_kwargs);

// Every string value in a JSON record, depth first in document order (e.g. all texts of a JSONL line,
// for contamination checks and for the testbed's trimmed vocabulary).
std::vector<std::string> json_string_values(const nlohmann::json& record);

// A response field as text: a string or one assistant message [{"role": "assistant", "content": ...}].
std::string response_text(const nlohmann::ordered_json& value, const std::string& where, const std::string& field);

// One prompt and one response as one example. Both strings: their tokens, then the end token (EOS),
// the loss on the response and EOS (TRL's standard format). A message-list prompt: prompt + response
// messages (a string response is one assistant message; a list may hold several, e.g. a tool call,
// its result and the answer) rendered as one conversation, the loss on the response's assistant spans,
// the tokens cut after the last one. `field` names the response in errors.
struct PromptResponse {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
  size_t prompt_length = 0;  // tokens before the response's first trained token
};
PromptResponse encode_prompt_response(const nlohmann::ordered_json& prompt, const nlohmann::ordered_json& response,
                                      const nlohmann::ordered_json& tools,
                                      const nlohmann::ordered_json& template_kwargs, const Tokenizer& tokenizer,
                                      const std::string& where, const std::string& field);

// RL prompts (TRL's prompt-only format): {"prompt": string | messages[, "tools"], ...}. Every other
// field (e.g. "answer") is kept for reward functions. Lines are checked like training data (file:line,
// skip_bad_records).
struct PromptDataset {
  std::vector<std::vector<int32_t>> prompts;  // token ids, truncated from the left to max_length
  std::vector<std::string> records;  // the JSON object of each line, as text
  int64_t skipped = 0, truncated = 0;
  int64_t size() const { return static_cast<int64_t>(prompts.size()); }
};
PromptDataset read_prompt_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// Unpaired preference (KTO): {"prompt", "completion", "label": true | false}, one example each, or
// a preference pair (explicit or implicit prompt), which gives a desirable and an undesirable
// example. Masks as encode_prompt_response; `labels` set.
TokenizedDataset tokenize_unpaired_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// HDF5 shard with datasets tokens / offsets / loss_mask (chunked, deflate) and attributes
// tokenizer_sha256, source_sha256, format, max_length, truncated, skipped.
struct ShardInfo {
  std::string tokenizer_sha256, source_sha256, format;
  int64_t max_length = 0;
};
void write_sft_shard(const std::string& path, const TokenizedDataset& data, const ShardInfo& info);
TokenizedDataset read_sft_shard(const std::string& path, ShardInfo* info = nullptr);

// Tokenizes spec.train into <cache_dir>/<source sha>-<tokenizer sha>.h5 unless a shard with the same
// hashes and settings is already there; returns the dataset. Logs what it did to stderr.
// Reference-model sequence log-probs of every example of a shard (sums and means over its loss
// tokens), stored once per (shard, base model) so DPO can train without a reference model in memory.
void write_reference_logprobs(const std::string& path, const std::vector<double>& sums,
                              const std::vector<double>& means, const std::string& base_sha256);
// False when the file is absent; UserError when it is unreadable or was made for another base.
bool read_reference_logprobs(const std::string& path, const std::string& base_sha256, std::vector<double>* sums,
                             std::vector<double>* means);

// kind: "sft" (tokenize_sft_jsonl), "preference" (tokenize_preference_jsonl) or "unpaired"
// (tokenize_unpaired_jsonl).
TokenizedDataset prepare_sft_data(const DataSpec& spec, const Tokenizer& tokenizer, const std::string& tokenizer_sha256,
                                  const std::string& cache_dir, ShardInfo* shard_info = nullptr,
                                  std::string* shard_path = nullptr, const std::string& kind = "sft");

}  // namespace posttrain
