#include "datasets/sft_data.h"

#include <H5Cpp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "datasets/h5_io.h"
#include "models/chat.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

using nlohmann::json;

std::vector<ChatMessage> parse_messages(const json& value, const std::string& where, const std::string& field) {
  if (!value.is_array() || value.empty())
    fail(where, "\"" + field + "\" must be a non-empty list of {\"role\", \"content\"}");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < value.size(); ++i) {
    const auto& m = value[i];
    const std::string at = field + "[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) fail(where, at + ".role must be a string");
    if (!m.contains("content") || !m["content"].is_string()) fail(where, at + ".content must be a string");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      fail(where, at + ".role \"" + role + "\" is not one of system, user, assistant, tool");
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

// One record -> ids + mask, or UserError naming `where`.
void tokenize_record(const json& record, const std::string& format, const Tokenizer& tokenizer,
                     const std::string& where, std::vector<int32_t>& ids, std::vector<uint8_t>& mask) {
  if (!record.is_object()) fail(where, "record must be a JSON object");
  std::string kind = format;
  if (kind == "auto") {
    if (record.contains("messages"))
      kind = "messages";
    else if (record.contains("prompt") && record.contains("completion"))
      kind = "prompt_completion";
    else if (record.contains("text"))
      kind = "text";
    else
      fail(where, "cannot tell the format: expected \"messages\", \"prompt\" + \"completion\" or \"text\"");
  }
  auto mark_spans = [&](const RenderedChat& chat, size_t from) {
    for (const auto& [begin, end] : chat.assistant_spans)
      if (begin >= from)
        for (size_t i = begin; i < end; ++i) mask[i] = 1;
  };
  if (kind == "messages") {
    if (!record.contains("messages")) fail(where, "missing \"messages\"");
    auto chat = render_chat(tokenizer, parse_messages(record["messages"], where, "messages"), false);
    if (chat.assistant_spans.empty()) fail(where, "\"messages\" has no assistant turn to train on");
    ids = chat.ids;
    mask.assign(ids.size(), 0);
    mark_spans(chat, 0);
    return;
  }
  if (kind == "text") {  // TRL's language modelling format: every token, then EOS, as TRL appends it
    if (!record.contains("text") || !record["text"].is_string()) fail(where, "\"text\" must be a string");
    ids = tokenizer.encode(record["text"].get<std::string>());
    if (ids.empty()) fail(where, "empty example");
    ids.push_back(tokenizer.eos_id());
    mask.assign(ids.size(), 1);
    return;
  }
  if (!record.contains("prompt")) fail(where, "missing \"prompt\"");
  if (!record.contains("completion")) fail(where, "missing \"completion\"");
  const json& prompt = record["prompt"];
  const json& completion = record["completion"];
  if (prompt.is_string() && completion.is_string()) {
    ids = tokenizer.encode(prompt.get<std::string>());
    mask.assign(ids.size(), 0);
    auto completion_ids = tokenizer.encode(completion.get<std::string>());
    completion_ids.push_back(tokenizer.eos_id());
    ids.insert(ids.end(), completion_ids.begin(), completion_ids.end());
    mask.resize(ids.size(), 1);
  } else if (prompt.is_array() && completion.is_array()) {
    auto messages = parse_messages(prompt, where, "prompt");
    const size_t prompt_turns = messages.size();
    auto tail = parse_messages(completion, where, "completion");
    messages.insert(messages.end(), tail.begin(), tail.end());
    auto chat = render_chat(tokenizer, messages, false);
    auto prompt_only = render_chat(
        tokenizer, std::vector<ChatMessage>(messages.begin(), messages.begin() + static_cast<long>(prompt_turns)),
        false);
    ids = chat.ids;
    mask.assign(ids.size(), 0);
    mark_spans(chat, prompt_only.ids.size());
  } else {
    fail(where, "\"prompt\" and \"completion\" must both be strings or both be message lists");
  }
  if (ids.empty()) fail(where, "empty example");
}

}  // namespace

json parse_json_record(const std::string& line, const std::string& where) {
  std::vector<std::set<std::string>> keys;  // per object being parsed, the keys seen so far
  std::string duplicate;
  const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json record;
  try {
    record = json::parse(line, check);
  } catch (const json::exception& e) {
    fail(where, std::string("not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(where, "duplicate key \"" + duplicate + "\" in one object (a key may appear once)");
  return record;
}

int64_t for_each_jsonl_record(const DataSpec& spec, const std::function<void(const json&, const std::string&)>& use) {
  std::ifstream in(spec.train, std::ios::binary);
  if (!in) fail(spec.train, "data file not found");
  int64_t skipped = 0;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = spec.train + ":" + std::to_string(line_number);
    try {
      use(parse_json_record(line, where), where);
    } catch (const UserError& e) {
      if (!spec.skip_bad_records) throw;
      ++skipped;
      std::cerr << "posttrain: skipping bad record: " << e.what() << "\n";
    }
  }
  return skipped;
}

namespace {

// Reads spec.train line by line; `tokenize` turns one record into one or more examples (ids + mask).
// Malformed lines fail with file:line, or are skipped and counted with skip_bad_records.
using RecordTokenizer = std::function<void(const json&, const std::string&, std::vector<std::vector<int32_t>>&,
                                           std::vector<std::vector<uint8_t>>&)>;

TokenizedDataset tokenize_jsonl(const DataSpec& spec, const RecordTokenizer& tokenize) {
  TokenizedDataset data;
  data.skipped = for_each_jsonl_record(spec, [&](const json& record, const std::string& where) {
    std::vector<std::vector<int32_t>> examples;
    std::vector<std::vector<uint8_t>> masks;
    tokenize(record, where, examples, masks);
    for (size_t k = 0; k < examples.size(); ++k) {
      auto& ids = examples[k];
      auto& mask = masks[k];
      if (static_cast<int64_t>(ids.size()) > spec.max_length) {
        ids.resize(static_cast<size_t>(spec.max_length));
        mask.resize(static_cast<size_t>(spec.max_length));
        ++data.truncated;
      }
      data.tokens.insert(data.tokens.end(), ids.begin(), ids.end());
      data.loss_mask.insert(data.loss_mask.end(), mask.begin(), mask.end());
      data.offsets.push_back(static_cast<int64_t>(data.tokens.size()));
    }
  });
  if (data.size() == 0) fail(spec.train, "no usable records");
  return data;
}

}  // namespace

std::vector<int32_t> encode_prompt(const json& prompt, const Tokenizer& tokenizer, const std::string& where) {
  if (prompt.is_string()) return tokenizer.encode(prompt.get<std::string>());
  return render_chat(tokenizer, parse_messages(prompt, where, "prompt"), /*add_generation_prompt=*/true).ids;
}

std::vector<std::string> json_string_values(const json& record) {
  std::vector<std::string> out;
  std::function<void(const json&)> walk = [&](const json& value) {
    if (value.is_string()) out.push_back(value.get<std::string>());
    if (value.is_structured())
      for (const auto& item : value) walk(item);
  };
  walk(record);
  return out;
}

std::string response_text(const json& value, const std::string& where, const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  auto messages = parse_messages(value, where, field);
  if (messages.size() != 1 || messages[0].role != "assistant")
    fail(where, "\"" + field + "\" must be a string or one assistant message");
  return messages[0].content;
}

std::vector<int32_t> encode_prompt_response(const std::vector<int32_t>& prompt, const std::string& response,
                                            const Tokenizer& tokenizer) {
  std::vector<int32_t> ids = prompt;
  const auto response_ids = tokenizer.encode(response);
  ids.insert(ids.end(), response_ids.begin(), response_ids.end());
  ids.push_back(tokenizer.eos_id());
  return ids;
}

TokenizedDataset tokenize_preference_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  std::vector<float> preferences;
  bool any_soft = false;
  TokenizedDataset data =
      tokenize_jsonl(spec, [&](const json& record, const std::string& where,
                               std::vector<std::vector<int32_t>>& examples, std::vector<std::vector<uint8_t>>& masks) {
        if (!record.is_object()) fail(where, "record must be a JSON object");
        for (const char* key : {"prompt", "chosen", "rejected"})
          if (!record.contains(key))
            fail(where, std::string("missing \"") + key + "\" (expected prompt, chosen, rejected)");
        float preference = 1.0f;
        if (record.contains("preference")) {
          const json& p = record["preference"];
          if (!p.is_number() || p.get<double>() < 0.0 || p.get<double>() > 1.0)
            fail(where, "\"preference\" must be a number in [0, 1] (the probability that chosen is better)");
          preference = p.get<float>();
          any_soft = true;
        }
        const std::vector<int32_t> prompt = encode_prompt(record["prompt"], tokenizer, where);
        for (const char* key : {"chosen", "rejected"}) {
          std::vector<int32_t> ids = encode_prompt_response(prompt, response_text(record[key], where, key), tokenizer);
          std::vector<uint8_t> mask(ids.size(), 1);
          std::fill(mask.begin(), mask.begin() + static_cast<long>(prompt.size()), 0);
          examples.push_back(std::move(ids));
          masks.push_back(std::move(mask));
        }
        preferences.push_back(preference);
      });
  if (any_soft) data.preferences = std::move(preferences);
  return data;
}

TokenizedDataset tokenize_unpaired_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  std::vector<uint8_t> labels;
  TokenizedDataset data =
      tokenize_jsonl(spec, [&](const json& record, const std::string& where,
                               std::vector<std::vector<int32_t>>& examples, std::vector<std::vector<uint8_t>>& masks) {
        if (!record.is_object()) fail(where, "record must be a JSON object");
        if (!record.contains("prompt")) fail(where, "missing \"prompt\"");
        std::vector<std::pair<std::string, uint8_t>> responses;  // text, label
        if (record.contains("completion")) {
          if (!record.contains("label") || !record["label"].is_boolean())
            fail(where, "\"label\" must be true (desirable) or false (undesirable)");
          responses.emplace_back(response_text(record["completion"], where, "completion"), record["label"].get<bool>());
        } else if (record.contains("chosen") && record.contains("rejected")) {
          responses.emplace_back(response_text(record["chosen"], where, "chosen"), 1);
          responses.emplace_back(response_text(record["rejected"], where, "rejected"), 0);
        } else {
          fail(where, "expected {\"prompt\", \"completion\", \"label\"} or {\"prompt\", \"chosen\", \"rejected\"}");
        }
        const std::vector<int32_t> prompt = encode_prompt(record["prompt"], tokenizer, where);
        for (const auto& [text, label] : responses) {
          std::vector<int32_t> ids = encode_prompt_response(prompt, text, tokenizer);
          std::vector<uint8_t> mask(ids.size(), 1);
          std::fill(mask.begin(), mask.begin() + static_cast<long>(prompt.size()), 0);
          examples.push_back(std::move(ids));
          masks.push_back(std::move(mask));
          labels.push_back(label);
        }
      });
  data.labels = std::move(labels);
  return data;
}

PromptDataset read_prompt_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  PromptDataset data;
  data.skipped = for_each_jsonl_record(spec, [&](const json& record, const std::string& where) {
    if (!record.is_object()) fail(where, "record must be a JSON object");
    if (!record.contains("prompt")) fail(where, "missing \"prompt\" (a string or a message list)");
    auto ids = encode_prompt(record["prompt"], tokenizer, where);
    if (ids.empty()) fail(where, "empty prompt");
    if (static_cast<int64_t>(ids.size()) > spec.max_length) {  // keep the end: it holds the question
      ids.erase(ids.begin(), ids.end() - spec.max_length);
      ++data.truncated;
    }
    data.prompts.push_back(std::move(ids));
    data.records.push_back(record.dump());
  });
  if (data.size() == 0) fail(spec.train, "no usable records");
  return data;
}

TokenizedDataset tokenize_sft_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  return tokenize_jsonl(spec,
                        [&](const json& record, const std::string& where, std::vector<std::vector<int32_t>>& examples,
                            std::vector<std::vector<uint8_t>>& masks) {
                          std::vector<int32_t> ids;
                          std::vector<uint8_t> mask;
                          tokenize_record(record, spec.format, tokenizer, where, ids, mask);
                          examples.push_back(std::move(ids));
                          masks.push_back(std::move(mask));
                        });
}

void write_sft_shard(const std::string& path, const TokenizedDataset& data, const ShardInfo& info) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());  // concurrent runs may tokenize too
  try {
    H5::H5File file(tmp, H5F_ACC_TRUNC);
    write_vector(file, "tokens", data.tokens, H5::PredType::NATIVE_INT32);
    write_vector(file, "offsets", data.offsets, H5::PredType::NATIVE_INT64);
    write_vector(file, "loss_mask", data.loss_mask, H5::PredType::NATIVE_UINT8);
    if (!data.labels.empty()) write_vector(file, "labels", data.labels, H5::PredType::NATIVE_UINT8);
    if (!data.preferences.empty()) write_vector(file, "preferences", data.preferences, H5::PredType::NATIVE_FLOAT);
    write_string_attr(file, "tokenizer_sha256", info.tokenizer_sha256);
    write_string_attr(file, "source_sha256", info.source_sha256);
    write_string_attr(file, "format", info.format);
    write_int_attr(file, "max_length", info.max_length);
    write_int_attr(file, "truncated", data.truncated);
    write_int_attr(file, "skipped", data.skipped);
  } catch (const H5::Exception& e) {
    fail(tmp, "cannot write HDF5 shard: " + e.getDetailMsg());
  }
  fs::rename(tmp, path);
}

TokenizedDataset read_sft_shard(const std::string& path, ShardInfo* info) {
  H5::Exception::dontPrint();
  TokenizedDataset data;
  try {
    H5::H5File file(path, H5F_ACC_RDONLY);
    data.tokens = read_vector<int32_t>(file, "tokens", H5::PredType::NATIVE_INT32);
    data.offsets = read_vector<int64_t>(file, "offsets", H5::PredType::NATIVE_INT64);
    data.loss_mask = read_vector<uint8_t>(file, "loss_mask", H5::PredType::NATIVE_UINT8);
    if (H5Lexists(file.getId(), "labels", H5P_DEFAULT) > 0)
      data.labels = read_vector<uint8_t>(file, "labels", H5::PredType::NATIVE_UINT8);
    if (H5Lexists(file.getId(), "preferences", H5P_DEFAULT) > 0)
      data.preferences = read_vector<float>(file, "preferences", H5::PredType::NATIVE_FLOAT);
    data.truncated = read_int_attr(file, "truncated");
    data.skipped = read_int_attr(file, "skipped");
    if (info != nullptr) {
      info->tokenizer_sha256 = read_string_attr(file, "tokenizer_sha256");
      info->source_sha256 = read_string_attr(file, "source_sha256");
      info->format = read_string_attr(file, "format");
      info->max_length = read_int_attr(file, "max_length");
    }
  } catch (const H5::Exception& e) {
    fail(path, "not a readable posttrain shard: " + e.getDetailMsg());
  }
  if (data.offsets.empty() || data.offsets.front() != 0 ||
      data.offsets.back() != static_cast<int64_t>(data.tokens.size()) || data.loss_mask.size() != data.tokens.size())
    fail(path, "inconsistent shard (offsets / tokens / loss_mask sizes disagree)");
  if (!data.labels.empty() && static_cast<int64_t>(data.labels.size()) != data.size())
    fail(path, "inconsistent shard (one label per example expected)");
  if (!data.preferences.empty() && 2 * static_cast<int64_t>(data.preferences.size()) != data.size())
    fail(path, "inconsistent shard (one preference per pair expected)");
  for (size_t i = 1; i < data.offsets.size(); ++i)
    if (data.offsets[i] < data.offsets[i - 1]) fail(path, "inconsistent shard (offsets decrease)");
  return data;
}

void write_reference_logprobs(const std::string& path, const std::vector<double>& sums,
                              const std::vector<double>& means, const std::string& base_sha256) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    H5::H5File file(tmp, H5F_ACC_TRUNC);
    write_vector(file, "sums", sums, H5::PredType::NATIVE_DOUBLE);
    write_vector(file, "means", means, H5::PredType::NATIVE_DOUBLE);
    write_string_attr(file, "base_sha256", base_sha256);
  } catch (const H5::Exception& e) {
    fail(tmp, "cannot write reference log-probs: " + e.getDetailMsg());
  }
  fs::rename(tmp, path);
}

bool read_reference_logprobs(const std::string& path, const std::string& base_sha256, std::vector<double>* sums,
                             std::vector<double>* means) {
  if (!fs::exists(path)) return false;
  H5::Exception::dontPrint();
  try {
    H5::H5File file(path, H5F_ACC_RDONLY);
    if (read_string_attr(file, "base_sha256") != base_sha256)
      fail(path, "reference log-probs were computed for another base model");
    *sums = read_vector<double>(file, "sums", H5::PredType::NATIVE_DOUBLE);
    *means = read_vector<double>(file, "means", H5::PredType::NATIVE_DOUBLE);
  } catch (const H5::Exception& e) {
    fail(path, "unreadable reference log-probs: " + e.getDetailMsg());
  }
  return true;
}

TokenizedDataset prepare_sft_data(const DataSpec& spec, const Tokenizer& tokenizer, const std::string& tokenizer_sha256,
                                  const std::string& cache_dir, ShardInfo* shard_info, std::string* shard_path,
                                  const std::string& kind) {
  if (!fs::exists(spec.train)) fail(spec.train, "data file not found");
  const std::string format = kind == "sft" ? spec.format : kind;
  ShardInfo wanted{tokenizer_sha256, sha256_file(spec.train), format, spec.max_length};
  fs::create_directories(cache_dir);
  const std::string path =
      (fs::path(cache_dir) / ("sft-" + wanted.source_sha256.substr(0, 16) + "-" + tokenizer_sha256.substr(0, 16) + "-" +
                              std::to_string(spec.max_length) + "-" + format + ".h5"))
          .string();
  if (shard_path != nullptr) *shard_path = path;
  if (shard_info != nullptr) *shard_info = wanted;
  if (fs::exists(path)) {
    ShardInfo found;
    TokenizedDataset data = read_sft_shard(path, &found);
    if (found.tokenizer_sha256 == wanted.tokenizer_sha256 && found.source_sha256 == wanted.source_sha256 &&
        found.format == wanted.format && found.max_length == wanted.max_length &&
        (data.skipped == 0 || spec.skip_bad_records)) {
      std::cerr << "posttrain: reusing tokenized shard " << path << ": " << data.size() << " examples, "
                << data.truncated << " truncated, " << data.skipped << " skipped\n";
      return data;
    }
  }
  TokenizedDataset data = kind == "preference" ? tokenize_preference_jsonl(spec, tokenizer)
                          : kind == "unpaired" ? tokenize_unpaired_jsonl(spec, tokenizer)
                                               : tokenize_sft_jsonl(spec, tokenizer);
  write_sft_shard(path, data, wanted);
  std::cerr << "posttrain: tokenized " << spec.train << " -> " << path << ": " << data.size() << " examples, "
            << data.tokens.size() << " tokens, " << data.truncated << " truncated (max_length " << spec.max_length
            << "), " << data.skipped << " skipped\n";
  return data;
}

}  // namespace posttrain
