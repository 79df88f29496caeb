#include "models/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "core/files.h"

namespace posttrain {

namespace {

using nlohmann::json;

void append_utf8(std::string& out, uint32_t cp) {
  utf8proc_uint8_t buf[4];
  auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// GPT-2's reversible byte -> printable code point table used by ByteLevel pre-tokenizers.
std::array<uint32_t, 256> byte_to_codepoint_table() {
  std::array<uint32_t, 256> table{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) table[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
  return table;
}

// The peer (transformers.js, and so the reference ids) runs the pattern as a JavaScript regex.
// PCRE2 differs from it in two places, which we rewrite to JavaScript's meaning:
//  - `(?i:'s|...)`: JS has no inline flags, so the peer spells the contractions with ASCII classes;
//    PCRE2's Unicode case folding would also match e.g. U+017F (long s).
//  - `\s` / `\S`: JS's \s is a fixed list (ECMA-262 WhiteSpace + LineTerminator), which includes
//    U+FEFF and excludes U+0085 (NEL); PCRE2's Unicode \s is the other way round on both.
constexpr const char* kJsSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

std::string javascript_compatible_pattern(std::string pattern) {
  const std::string contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  const std::string ascii = "(?:'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";
  for (size_t at = pattern.find(contractions); at != std::string::npos; at = pattern.find(contractions, at))
    pattern.replace(at, contractions.size(), ascii);
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char escaped = pattern[++i];
      if (escaped == 's') {
        out += in_class ? std::string(kJsSpace) : "[" + std::string(kJsSpace) + "]";
      } else if (escaped == 'S') {
        if (in_class) throw std::runtime_error("tokenizer: \\S inside a character class is not supported");
        out += "[^" + std::string(kJsSpace) + "]";
      } else {
        out += std::string{'\\', escaped};
      }
      continue;
    }
    if (c == '[' && !in_class)
      in_class = true;
    else if (c == ']' && in_class)
      in_class = false;
    out += c;
  }
  return out;
}

// Ids beyond this are refused (the largest real vocabularies are ~260k) so a corrupt file cannot
// make us allocate gigabytes.
constexpr int64_t kMaxVocab = 1 << 22;

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
};

struct PcreDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};

}  // namespace

struct Tokenizer::Impl {
  std::unordered_map<std::string, int32_t> vocab;  // token string (byte-level alphabet) -> id
  std::vector<std::string> id_bytes;  // id -> the raw bytes it stands for
  std::vector<bool> special;  // id -> special added token
  // (left id << 32 | right id) -> (merge rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::array<int32_t, 256> byte_ids{};  // id of each single byte's token
  std::vector<AddedToken> added;  // longest first, so the first match is the longest
  std::array<bool, 256> added_first_byte{};
  std::unique_ptr<pcre2_code, PcreDeleter> split_regex;
  int32_t eos = -1, pad = -1;
  std::string bos_token, eos_token;  // tokenizer_config's texts, for chat templates
  std::string chat_template, chat_template_origin;

  // Cache of BPE results per pre-token; encode() is const and may run on several threads.
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  std::pair<int32_t, int32_t> merge_of(int32_t left, int32_t right) const {
    auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right));
    return it == merges.end() ? std::pair<int32_t, int32_t>{-1, -1} : it->second;
  }
};

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  symbols.reserve(piece.size());
  for (unsigned char b : piece) symbols.push_back(byte_ids[b]);

  if (symbols.size() <= 64) {
    // Short pieces (nearly all): repeatedly merge the lowest-ranked adjacent pair, leftmost first.
    while (symbols.size() > 1) {
      int32_t best_rank = -1, best_id = -1;
      size_t best_at = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto [rank, merged] = merge_of(symbols[i], symbols[i + 1]);
        if (rank >= 0 && (best_rank < 0 || rank < best_rank)) {
          best_rank = rank;
          best_id = merged;
          best_at = i;
        }
      }
      if (best_rank < 0) break;
      symbols[best_at] = best_id;
      symbols.erase(symbols.begin() + static_cast<long>(best_at) + 1);
    }
    out.insert(out.end(), symbols.begin(), symbols.end());
    return;
  }

  // Long pieces (whitespace runs, long unbroken scripts): the same order with a heap of candidate
  // pairs keyed (rank, position) over a linked list of symbols, O(n log n).
  const int n = static_cast<int>(symbols.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int left;
    int32_t left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    auto [rank, merged] = merge_of(symbols[left], symbols[next[left]]);
    if (rank >= 0) heap.push({rank, left, symbols[left], symbols[next[left]]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    const int right = next[c.left];
    if (symbols[c.left] != c.left_id || right < 0 || symbols[right] != c.right_id) continue;  // stale
    symbols[c.left] = merge_of(c.left_id, c.right_id).second;
    symbols[right] = -1;
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(symbols[i]);
}

void Tokenizer::Impl::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  // NFC; pure ASCII is already NFC, skip the copy.
  std::string normalized;
  const bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (!ascii) {
    utf8proc_uint8_t* mapped = nullptr;
    auto len =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                     &mapped, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (len < 0) throw UserError(std::string("tokenizer: cannot NFC-normalise text: ") + utf8proc_errmsg(len));
    normalized.assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(len));
    std::free(mapped);
    text = normalized;
  }

  auto emit = [&](std::string_view piece) {
    if (piece.empty()) return;
    if (piece.size() <= 256) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(std::string(piece));
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const size_t before = out.size();
    bpe(piece, out);
    if (piece.size() <= 256) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() > 200000) cache.clear();
      cache.emplace(std::string(piece), std::vector<int32_t>(out.begin() + static_cast<long>(before), out.end()));
    }
  };

  pcre2_match_data* match = pcre2_match_data_create_from_pattern(split_regex.get(), nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0, emitted = 0;
  while (offset < text.size()) {
    int rc = pcre2_match(split_regex.get(), subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(match);
      throw std::runtime_error("tokenizer: pre-tokenizer regex failed with PCRE2 error " + std::to_string(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // cannot happen with Qwen's pattern; step one code point to stay safe
      end = begin + 1;
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
      offset = end;
      continue;
    }
    emit(text.substr(emitted, begin - emitted));  // "Isolated": text between matches is a piece too
    emit(text.substr(begin, end - begin));
    emitted = offset = end;
  }
  pcre2_match_data_free(match);
  emit(text.substr(emitted));
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  const std::string config_path = dir + "/tokenizer_config.json";
  auto exists = [](const std::string& file) {
    FILE* f = std::fopen(file.c_str(), "rb");
    if (f != nullptr) std::fclose(f);
    return f != nullptr;
  };
  std::string config;
  if (exists(config_path)) config = read_file(config_path);
  Tokenizer tokenizer = from_json(read_file(path), path, config, config_path);
  const std::string template_path = dir + "/chat_template.jinja";
  if (exists(template_path)) return tokenizer.with_chat_template(read_file(template_path), template_path);
  return tokenizer;
}

namespace {

std::shared_ptr<Tokenizer::Impl> parse_tokenizer(const std::string& tokenizer_json, const std::string& source,
                                                 const std::string& tokenizer_config_json,
                                                 const std::string& config_source) {
  using Impl = Tokenizer::Impl;
  auto impl = std::make_shared<Impl>();
  json j;
  try {
    j = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail(source, "missing \"model\" object");
  const json& model = j["model"];
  if (model.value("type", std::string()) != "BPE")
    fail(source, "model.type must be \"BPE\" (byte-level BPE tokenizers only)");
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(source, "missing model.vocab object");
  if (!model.contains("merges") || !model["merges"].is_array()) fail(source, "missing model.merges array");

  // Only the pipeline Qwen uses is implemented; refuse anything else rather than guess.
  if (j.contains("normalizer") && !j["normalizer"].is_null() && j["normalizer"].value("type", std::string()) != "NFC")
    fail(source, "normalizer must be NFC or null");
  const json& pre = j.value("pre_tokenizer", json());
  std::string pattern;
  try {
    if (pre.is_null() || pre.value("type", std::string()) != "Sequence" || pre["pretokenizers"].size() != 2 ||
        pre["pretokenizers"][0].value("type", std::string()) != "Split" ||
        pre["pretokenizers"][0].value("behavior", std::string()) != "Isolated" ||
        pre["pretokenizers"][0].value("invert", false) ||
        pre["pretokenizers"][1].value("type", std::string()) != "ByteLevel" ||
        pre["pretokenizers"][1].value("use_regex", true) || pre["pretokenizers"][1].value("add_prefix_space", false))
      fail(source,
           "pre_tokenizer must be Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)] as in Qwen's "
           "tokenizer.json");
    pattern = pre["pretokenizers"][0]["pattern"].at("Regex").get<std::string>();
  } catch (const json::exception& e) {
    fail(source, std::string("malformed pre_tokenizer: ") + e.what());
  }

  const std::string js_pattern = javascript_compatible_pattern(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(js_pattern.c_str()), js_pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    fail(source, "pre_tokenizer regex does not compile at offset " + std::to_string(error_offset) + ": " +
                     reinterpret_cast<char*>(message));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  impl->split_regex.reset(code);

  int32_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() >= kMaxVocab)
      fail(source, "model.vocab[\"" + it.key() + "\"] is not a valid id");
    const int32_t id = it.value().get<int32_t>();
    impl->vocab[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  const json added_tokens = j.value("added_tokens", json::array());
  for (const auto& t : added_tokens) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content"))
      fail(source, "added_tokens entry without id/content");
    if (!t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() >= kMaxVocab)
      fail(source, "added token " + t["content"].dump() + " has an invalid id");
    max_id = std::max(max_id, t["id"].get<int32_t>());
  }

  // Decoding table: byte-level code points back to bytes.
  const auto byte_to_cp = byte_to_codepoint_table();
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  for (int b = 0; b < 256; ++b) cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
  impl->id_bytes.assign(static_cast<size_t>(max_id + 1), std::string());
  impl->special.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : impl->vocab) {
    std::string bytes;
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(token.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(token.size());
    while (left > 0) {
      utf8proc_int32_t cp = 0;
      auto n = utf8proc_iterate(p, left, &cp);
      if (n <= 0) fail(source, "vocab token with invalid UTF-8");
      auto found = cp_to_byte.find(static_cast<uint32_t>(cp));
      if (found == cp_to_byte.end()) fail(source, "vocab token \"" + token + "\" is outside the byte-level alphabet");
      bytes += static_cast<char>(found->second);
      p += n;
      left -= n;
    }
    impl->id_bytes[static_cast<size_t>(id)] = bytes;
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_to_cp[b]);
    auto it = impl->vocab.find(s);
    if (it == impl->vocab.end()) fail(source, "vocab lacks the single-byte token for byte " + std::to_string(b));
    impl->byte_ids[b] = it->second;
  }

  int32_t rank = 0;
  for (const auto& m : model["merges"]) {
    std::string left, right;
    if (m.is_string()) {  // older format: "left right"
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) fail(source, "merge #" + std::to_string(rank) + " is not \"left right\"");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail(source, "merge #" + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
    }
    auto l = impl->vocab.find(left), r = impl->vocab.find(right), merged = impl->vocab.find(left + right);
    if (l == impl->vocab.end() || r == impl->vocab.end() || merged == impl->vocab.end())
      fail(source,
           "merge #" + std::to_string(rank) + " (" + left + " " + right + ") uses a token missing from the vocab");
    const uint64_t key =
        (static_cast<uint64_t>(static_cast<uint32_t>(l->second)) << 32) | static_cast<uint32_t>(r->second);
    impl->merges.emplace(key, std::make_pair(rank, merged->second));  // first (lowest) rank wins
    ++rank;
  }

  for (const auto& t : added_tokens) {
    AddedToken token{t["content"].get<std::string>(), t["id"].get<int32_t>(), t.value("special", false)};
    if (token.content.empty()) fail(source, "added token with empty content");
    impl->id_bytes[static_cast<size_t>(token.id)] = token.content;
    impl->special[static_cast<size_t>(token.id)] = token.special;
    impl->vocab[token.content] = token.id;
    impl->added_first_byte[static_cast<unsigned char>(token.content[0])] = true;
    impl->added.push_back(token);
  }
  std::stable_sort(impl->added.begin(), impl->added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });

  // eos / pad / bos and the chat template from tokenizer_config.json (tokens as strings or
  // {"content": ...} objects).
  if (!tokenizer_config_json.empty()) {
    json config;
    try {
      config = json::parse(tokenizer_config_json);
    } catch (const json::exception& e) {
      fail(config_source, std::string("not valid JSON: ") + e.what());
    }
    if (!config.is_object()) fail(config_source, "must be a JSON object");
    auto text_of = [&](const char* key) -> std::string {
      if (!config.contains(key) || config[key].is_null()) return "";
      const json& v = config[key];
      if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
      if (!v.is_string()) fail(config_source, std::string(key) + " must be a string or {\"content\": string}");
      return v.get<std::string>();
    };
    auto token_of = [&](const char* key) -> int32_t {
      const std::string s = text_of(key);
      if (s.empty()) return -1;
      auto it = impl->vocab.find(s);
      if (it == impl->vocab.end()) fail(config_source, std::string(key) + " \"" + s + "\" is not a token");
      return it->second;
    };
    impl->eos = token_of("eos_token");
    impl->pad = token_of("pad_token");
    impl->bos_token = text_of("bos_token");
    impl->eos_token = text_of("eos_token");
    if (config.contains("chat_template") && !config["chat_template"].is_null()) {
      const json& t = config["chat_template"];
      impl->chat_template_origin = config_source + ": chat_template";
      if (t.is_string()) {
        impl->chat_template = t.get<std::string>();
      } else if (t.is_array()) {  // named templates: transformers applies "default" unless told otherwise
        for (const auto& named : t)
          if (named.is_object() && named.value("name", std::string()) == "default" && named.contains("template") &&
              named["template"].is_string())
            impl->chat_template = named["template"].get<std::string>();
        if (impl->chat_template.empty())
          fail(config_source, "chat_template is a list without a {\"name\": \"default\", \"template\": ...} entry");
        impl->chat_template_origin = config_source + ": chat_template[default]";
      } else {
        fail(config_source, "chat_template must be a string or a list of {\"name\", \"template\"}");
      }
    }
  }
  if (impl->eos < 0) {
    auto it = impl->vocab.find("<|im_end|>");
    if (it != impl->vocab.end()) {
      impl->eos = it->second;
      if (impl->eos_token.empty()) impl->eos_token = it->first;
    }
  }
  if (impl->pad < 0) {
    auto it = impl->vocab.find("<|endoftext|>");
    impl->pad = it != impl->vocab.end() ? it->second : impl->eos;
  }
  return impl;
}

}  // namespace

Tokenizer Tokenizer::from_json(const std::string& tokenizer_json, const std::string& source,
                               const std::string& tokenizer_config_json, const std::string& config_source) {
  try {
    return Tokenizer(parse_tokenizer(tokenizer_json, source, tokenizer_config_json, config_source));
  } catch (const json::exception& e) {
    // A field of the wrong type or shape anywhere in the file.
    fail(source, std::string("malformed tokenizer file: ") + e.what());
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& impl = *impl_;
  {
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(text.size());
    while (left > 0) {
      utf8proc_int32_t cp = 0;
      auto n = utf8proc_iterate(p, left, &cp);
      if (n <= 0)
        throw UserError("text is not valid UTF-8 (at byte " + std::to_string(text.size() - static_cast<size_t>(left)) +
                        ")");
      p += n;
      left -= n;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    if (impl.added_first_byte[static_cast<unsigned char>(text[pos])]) {
      const AddedToken* found = nullptr;
      for (const auto& token : impl.added) {
        if (text.compare(pos, token.content.size(), token.content) == 0) {
          found = &token;
          break;
        }
      }
      if (found != nullptr) {
        impl.encode_segment(text.substr(segment_start, pos - segment_start), ids);
        ids.push_back(found->id);
        pos += found->content.size();
        segment_start = pos;
        continue;
      }
    }
    ++pos;
  }
  impl.encode_segment(text.substr(segment_start), ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= id_count())
      throw UserError("decode: token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                      std::to_string(id_count() - 1) + ")");
    if (skip_special_tokens && impl_->special[static_cast<size_t>(id)]) continue;
    out += impl_->id_bytes[static_cast<size_t>(id)];
  }
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::require_token(std::string_view token) const {
  auto id = token_to_id(token);
  if (!id) throw UserError("tokenizer: token \"" + std::string(token) + "\" is not in the vocabulary");
  return *id;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < id_count() && impl_->special[static_cast<size_t>(id)];
}
int32_t Tokenizer::id_count() const { return static_cast<int32_t>(impl_->id_bytes.size()); }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::chat_template() const {
  return chat_template_ ? chat_template_->first : impl_->chat_template;
}
const std::string& Tokenizer::chat_template_origin() const {
  return chat_template_ ? chat_template_->second : impl_->chat_template_origin;
}

Tokenizer Tokenizer::with_chat_template(std::string source, std::string origin) const {
  Tokenizer copy = *this;  // shares the vocabulary and merges
  copy.chat_template_ =
      std::make_shared<const std::pair<std::string, std::string>>(std::move(source), std::move(origin));
  return copy;
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  namespace fs = std::filesystem;
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}) {
    const fs::path from = fs::path(from_dir) / file;
    if (!fs::exists(from)) {
      if (std::string(file) == "chat_template.jinja") continue;
      fail(from.string(), "tokenizer file not found");
    }
    fs::copy_file(from, fs::path(to_dir) / file, fs::copy_options::overwrite_existing);
  }
}

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(bytes.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(bytes.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    auto n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {
      out += "\xEF\xBF\xBD";
      n = 1;
    } else {
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    p += n;
    left -= n;
  }
  return out;
}

}  // namespace posttrain
