// Byte-level BPE tokenizer read from a HF tokenizer.json (Qwen2/2.5/3): added tokens matched first,
// NFC normalisation, the Split regex pre-tokenizer (PCRE2 JIT), byte-to-unicode mapping, merges by
// rank. decode() inverts encode() for any valid UTF-8 text up to NFC.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace posttrain {

class Tokenizer {
 public:
  // Reads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json (eos / pad / bos
  // tokens, chat_template) and <dir>/chat_template.jinja (which transformers prefers to the config's
  // chat_template when both are there).
  static Tokenizer from_dir(const std::string& dir);
  // `source` names the file in error messages; `config_source` names tokenizer_config_json.
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& source,
                             const std::string& tokenizer_config_json = "",
                             const std::string& config_source = "tokenizer_config.json");

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
  // tokenizer_config's bos_token / eos_token as text ("" when null or absent): chat templates use them.
  const std::string& bos_token() const;
  const std::string& eos_token() const;

  // The Jinja chat template ("" when the tokenizer has none) and where it came from, for messages:
  // "<dir>/chat_template.jinja" or "<dir>/tokenizer_config.json: chat_template".
  const std::string& chat_template() const;
  const std::string& chat_template_origin() const;
  // A copy with this chat template (e.g. a recipe's own); origin names it in error messages.
  Tokenizer with_chat_template(std::string source, std::string origin) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  // Set by with_chat_template: (source, origin), replacing the one read with the tokenizer.
  std::shared_ptr<const std::pair<std::string, std::string>> chat_template_;
};

// Copies a tokenizer folder's files into `to_dir` (a checkpoint): tokenizer.json and
// tokenizer_config.json (UserError when missing), chat_template.jinja when there is one.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);

// Replaces bytes that are not valid UTF-8 with U+FFFD (for printing decoded text as JSON).
std::string sanitize_utf8(std::string_view bytes);

}  // namespace posttrain
