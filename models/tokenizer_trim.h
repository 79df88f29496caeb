// A byte-level BPE tokenizer trimmed to the tokens a fixed set of texts uses, for training small
// models on a closed world (the testbed) where the 151,936-row LM head would dominate the cost.
//
// Kept: the 256 byte tokens (so any text still encodes), every token the full tokenizer produces
// for the texts, and, closing over merges, every token a kept token is merged from. Kept merges are
// those whose result is kept, in their original order. Then every merge BPE applies to a covered text
// is kept and no kept merge outranks it, so covered texts encode to the same tokens as with the full
// tokenizer (ids renumbered); other texts still encode and decode exactly, in more, shorter tokens.
// Added (special) tokens are all kept, numbered after the vocabulary. The chat_template is dropped:
// testbed worlds speak ChatML (models/chat.h's fallback), not the full model's template.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

struct TrimmedTokenizer {
  nlohmann::json tokenizer_json;  // tokenizer.json with the trimmed vocab, merges and renumbered added tokens
  nlohmann::json tokenizer_config;  // tokenizer_config.json with added_tokens_decoder renumbered, no chat_template
  std::vector<int32_t> original_ids;  // new id -> id in the full tokenizer
};

// Reads <full_dir>/tokenizer.json (+ tokenizer_config.json) and trims it to `texts`.
TrimmedTokenizer trim_tokenizer(const std::string& full_dir, const std::vector<std::string>& texts);

// Writes tokenizer.json, tokenizer_config.json and trim.json (original ids, source sha256) into dir.
void write_trimmed_tokenizer(const TrimmedTokenizer& trimmed, const std::string& full_dir, const std::string& dir);

}  // namespace posttrain
