#include "models/tokenizer_trim.h"

#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "models/tokenizer.h"

namespace posttrain {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A merge as tokenizer.json writes it: ["a", "b"] (tokenizers >= 0.20) or "a b" (older files).
std::pair<std::string, std::string> merge_parts(const json& merge, const std::string& source) {
  if (merge.is_array() && merge.size() == 2) return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  if (merge.is_string()) {
    const std::string text = merge.get<std::string>();
    const size_t space = text.find(' ');
    if (space != std::string::npos) return {text.substr(0, space), text.substr(space + 1)};
  }
  throw UserError(source + ": model.merges holds " + merge.dump() + ", not a pair");
}

}  // namespace

TrimmedTokenizer trim_tokenizer(const std::string& full_dir, const std::vector<std::string>& texts) {
  const std::string source = full_dir + "/tokenizer.json";
  json full;
  try {
    full = json::parse(read_file(source));
  } catch (const json::exception& e) {
    throw UserError(source + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!full.contains("model") || full["model"].value("type", "") != "BPE" || !full["model"]["vocab"].is_object() ||
      !full["model"]["merges"].is_array())
    throw UserError(source + ": not a BPE tokenizer.json (model.type, model.vocab, model.merges)");
  const Tokenizer tokenizer = Tokenizer::from_dir(full_dir);

  std::map<int32_t, std::string> token_of_id;
  for (const auto& [token, id] : full["model"]["vocab"].items()) token_of_id[id.get<int32_t>()] = token;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> made_from;  // result -> merges
  for (const auto& merge : full["model"]["merges"]) {
    auto parts = merge_parts(merge, source);
    made_from[parts.first + parts.second].push_back(parts);
  }

  // Kept tokens: the byte alphabet (ids 0..255 in Qwen's vocab, each one character), what the texts
  // use, and the closure over every merge that produces a kept token.
  std::set<std::string> kept;
  std::vector<std::string> todo;
  const auto keep = [&](const std::string& token) {
    if (kept.insert(token).second) todo.push_back(token);
  };
  for (int32_t id = 0; id < 256; ++id) keep(token_of_id.at(id));
  for (const auto& text : texts)
    for (int32_t id : tokenizer.encode(text))
      if (token_of_id.count(id)) keep(token_of_id[id]);  // added tokens are kept separately
  while (!todo.empty()) {
    const std::string token = todo.back();
    todo.pop_back();
    auto it = made_from.find(token);
    if (it == made_from.end()) continue;
    for (const auto& [a, b] : it->second) {
      keep(a);
      keep(b);
    }
  }

  TrimmedTokenizer out;
  json vocab = json::object();
  std::map<int32_t, int32_t> new_id;  // full id -> trimmed id
  for (const auto& [id, token] : token_of_id)
    if (kept.count(token)) {
      new_id[id] = static_cast<int32_t>(out.original_ids.size());
      vocab[token] = new_id[id];
      out.original_ids.push_back(id);
    }
  json merges = json::array();
  for (const auto& merge : full["model"]["merges"]) {
    const auto parts = merge_parts(merge, source);
    if (kept.count(parts.first + parts.second)) merges.push_back(merge);
  }
  json added = json::array();
  for (json token : full.value("added_tokens", json::array())) {
    const int32_t id = token["id"].get<int32_t>();
    new_id[id] = static_cast<int32_t>(out.original_ids.size());
    token["id"] = new_id[id];
    out.original_ids.push_back(id);
    added.push_back(token);
  }
  out.tokenizer_json = full;
  out.tokenizer_json["model"]["vocab"] = vocab;
  out.tokenizer_json["model"]["merges"] = merges;
  out.tokenizer_json["added_tokens"] = added;

  const std::string config_path = full_dir + "/tokenizer_config.json";
  if (fs::exists(config_path)) {
    out.tokenizer_config = json::parse(read_file(config_path));
    if (out.tokenizer_config.contains("added_tokens_decoder")) {
      json decoder = json::object();
      for (const auto& [id, token] : out.tokenizer_config["added_tokens_decoder"].items()) {
        auto it = new_id.find(std::stoi(id));
        if (it != new_id.end()) decoder[std::to_string(it->second)] = token;
      }
      out.tokenizer_config["added_tokens_decoder"] = decoder;
    }
    // The testbed's chat format is ChatML without Qwen3's <think> blocks: its base is pretrained on
    // that format, and the blocks would add five tokens to every ~30-token example. Without a
    // chat_template the trimmed tokenizer renders ChatML (models/chat.h), as every testbed study has.
    out.tokenizer_config.erase("chat_template");
  }
  return out;
}

void write_trimmed_tokenizer(const TrimmedTokenizer& trimmed, const std::string& full_dir, const std::string& dir) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/tokenizer.json", trimmed.tokenizer_json.dump());
  if (!trimmed.tokenizer_config.is_null())
    write_file_atomic(dir + "/tokenizer_config.json", trimmed.tokenizer_config.dump(2));
  const json record = {{"source", full_dir + "/tokenizer.json"},
                       {"source_sha256", sha256_file(full_dir + "/tokenizer.json")},
                       {"vocab_size", trimmed.original_ids.size()},
                       {"original_ids", trimmed.original_ids}};
  write_file_atomic(dir + "/trim.json", record.dump());
}

}  // namespace posttrain
