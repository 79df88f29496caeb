// Byte-level BPE tokenizer read from a HF tokenizer.json (Qwen2/2.5/3): added tokens matched first,
// NFC normalisation, the Split regex pre-tokenizer (PCRE2 JIT), byte-to-unicode mapping, merges by
// rank. decode() inverts encode() for any valid UTF-8 text up to NFC.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace posttrain {

class Tokenizer {
 public:
  // Reads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json (eos / pad tokens).
  static Tokenizer from_dir(const std::string& dir);
  // `source` names the file in error messages.
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& source,
                             const std::string& tokenizer_config_json = "");

  // Token ids of `text`; special tokens written in the text are matched, none are added.
  // UserError if the text is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text) const;
  // Bytes the ids stand for (may end inside a UTF-8 sequence when cut mid-character).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  int32_t require_token(std::string_view token) const;  // UserError if the token is not in the vocab
  bool is_special(int32_t id) const;
  int32_t id_count() const;  // largest id + 1
  int32_t eos_id() const;  // tokenizer_config eos_token (Qwen: <|im_end|>)
  int32_t pad_id() const;  // tokenizer_config pad_token (Qwen: <|endoftext|>)

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Replaces bytes that are not valid UTF-8 with U+FFFD (for printing decoded text as JSON).
std::string sanitize_utf8(std::string_view bytes);

}  // namespace posttrain
