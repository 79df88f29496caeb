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
// object in it repeats a key (the parser would keep one of the values in silence).
nlohmann::json parse_json_record(const std::string& line, const std::string& where);

// Calls `use` with each non-blank line of spec.train parsed as JSON and its "file:line". A UserError
// from parsing or from `use` propagates, or (skip_bad_records) is reported, counted and skipped.
// Returns the number skipped.
int64_t for_each_jsonl_record(const DataSpec& spec,
                              const std::function<void(const nlohmann::json&, const std::string&)>& use);

// Reads the JSONL file. Formats: {"messages": [{"role", "content"}, ...]} (loss on assistant turns)
// and {"prompt", "completion"} as strings (loss on completion + <|im_end|>) or message lists.
// A malformed line is a UserError naming file:line and the field, unless skip_bad_records.
TokenizedDataset tokenize_sft_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// Preference pairs {"prompt", "chosen", "rejected"}: prompt a string or a message list (rendered
// with the assistant generation prompt), chosen / rejected strings or [{"role": "assistant", ...}].
// Pair i becomes examples 2i (prompt + chosen) and 2i+1 (prompt + rejected), each with the loss mask
// on its response and end token, so sequence log-probs are sums over response tokens only. An optional
// "preference" number in [0, 1] is a soft label (P(chosen is better)); records without it count 1.
TokenizedDataset tokenize_preference_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// A prompt as the preference, score and RL formats take it: a string (encoded as is) or a message list
// (rendered as ChatML with the assistant generation prompt). UserError naming `where`.
std::vector<int32_t> encode_prompt(const nlohmann::json& prompt, const Tokenizer& tokenizer, const std::string& where);

// Every string value in a JSON record, depth first in document order (e.g. all texts of a JSONL line,
// for contamination checks and for the testbed's trimmed vocabulary).
std::vector<std::string> json_string_values(const nlohmann::json& record);

// A response field: a string or one assistant message [{"role": "assistant", "content": ...}].
std::string response_text(const nlohmann::json& value, const std::string& where, const std::string& field);

// prompt ids + response ids + the end token (<|im_end|>), and where the response starts.
std::vector<int32_t> encode_prompt_response(const std::vector<int32_t>& prompt, const std::string& response,
                                            const Tokenizer& tokenizer);

// RL prompts: {"prompt": string | messages, ...}. Every other field (e.g. "answer") is kept for
// reward functions. Lines are checked like training data (file:line, skip_bad_records).
struct PromptDataset {
  std::vector<std::vector<int32_t>> prompts;  // token ids, truncated from the left to max_length
  std::vector<std::string> records;  // the JSON object of each line, as text
  int64_t skipped = 0, truncated = 0;
  int64_t size() const { return static_cast<int64_t>(prompts.size()); }
};
PromptDataset read_prompt_jsonl(const DataSpec& spec, const Tokenizer& tokenizer);

// Unpaired feedback (KTO): {"prompt", "completion", "label": true | false}, one example each, or
// {"prompt", "chosen", "rejected"}, which gives a desirable and an undesirable example. Loss mask on
// the completion and its end token; `labels` set.
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
