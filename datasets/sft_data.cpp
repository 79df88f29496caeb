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
using nlohmann::ordered_json;

// A message list: objects with a role; content a string, or absent / null on an assistant message
// that carries tool_calls (TRL's tool-calling form). Other fields go to the chat template as they are.
ordered_json parse_messages(const ordered_json& value, const std::string& where, const std::string& field) {
  if (!value.is_array() || value.empty())
    fail(where, "\"" + field + "\" must be a non-empty list of {\"role\", \"content\"}");
  for (size_t i = 0; i < value.size(); ++i) {
    const auto& m = value[i];
    const std::string at = field + "[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || m["role"].get<std::string>().empty())
      fail(where, at + ".role must be a non-empty string");
    const bool calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (calls && (!m["tool_calls"].is_array() || m["tool_calls"].empty()))
      fail(where, at + ".tool_calls must be a non-empty list of {\"type\": \"function\", \"function\": {...}}");
    if (calls)
      for (const auto& call : m["tool_calls"])
        if (!call.is_object()) fail(where, at + ".tool_calls holds a non-object");
    const bool content = m.contains("content") && !m["content"].is_null();
    if (content && !m["content"].is_string()) fail(where, at + ".content must be a string");
    if (!content && !calls) fail(where, at + ".content must be a string (it may be left out only beside tool_calls)");
    if (m.contains("reasoning_content") && !m["reasoning_content"].is_string() && !m["reasoning_content"].is_null())
      fail(where, at + ".reasoning_content must be a string");
  }
  return value;
}

// A record's tool schemas: absent / null, a list of objects, or a string holding such a list (how
// HF datasets often store them).
ordered_json parse_tools(const ordered_json& record, const std::string& where) {
  if (!record.contains("tools") || record["tools"].is_null()) return nullptr;
  ordered_json tools = record["tools"];
  if (tools.is_string()) {
    try {
      tools = ordered_json::parse(tools.get<std::string>());
    } catch (const ordered_json::exception& e) {
      fail(where, std::string("\"tools\" is a string that is not JSON: ") + e.what());
    }
  }
  if (!tools.is_array()) fail(where, "\"tools\" must be a list of tool schemas");
  for (const auto& tool : tools)
    if (!tool.is_object()) fail(where, "\"tools\" must hold objects (JSON schemas)");
  return tools;
}

size_t assistant_count(const ordered_json& messages) {
  size_t n = 0;
  for (const auto& m : messages) n += m.is_object() && m.value("role", std::string()) == "assistant";
  return n;
}

// render_conversation with `where` (file:line) in front of its errors.
RenderedChat render_at(const Tokenizer& tokenizer, Conversation conversation, bool add_generation_prompt,
                       const std::string& where) {
  try {
    return render_conversation(tokenizer, conversation, add_generation_prompt);
  } catch (const UserError& e) {
    fail(where, e.what());
  }
}

std::string record_kind(const ordered_json& record, const std::string& where) {
  if (record.contains("messages")) return "messages";
  if (record.contains("prompt") && record.contains("completion")) return "prompt_completion";
  if (record.contains("text")) return "text";
  if (record.contains("chosen") || record.contains("rejected"))
    fail(where, "a preference record (chosen / rejected): train it with a preference method (dpo, reward, kto)");
  fail(where, "cannot tell the format: expected \"messages\", \"prompt\" + \"completion\" or \"text\"");
}

// One SFT record -> ids + mask, or UserError naming `where`.
void tokenize_record(const ordered_json& record, const std::string& format, const ordered_json& kwargs,
                     const Tokenizer& tokenizer, const std::string& where, std::vector<int32_t>& ids,
                     std::vector<uint8_t>& mask) {
  if (!record.is_object()) fail(where, "record must be a JSON object");
  const std::string kind = format == "auto" ? record_kind(record, where) : format;
  if (kind == "messages") {
    if (!record.contains("messages")) fail(where, "missing \"messages\"");
    Conversation conversation{parse_messages(record["messages"], where, "messages"), parse_tools(record, where),
                              kwargs};
    auto chat = render_at(tokenizer, std::move(conversation), false, where);
    if (chat.assistant_spans.empty()) fail(where, "\"messages\" has no assistant turn to train on");
    ids = chat.ids;
    mask.assign(ids.size(), 0);
    for (const auto& [begin, end] : chat.assistant_spans) std::fill(mask.begin() + begin, mask.begin() + end, 1);
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
  auto example = encode_prompt_response(record["prompt"], record["completion"], parse_tools(record, where), kwargs,
                                        tokenizer, where, "completion");
  ids = std::move(example.ids);
  mask = std::move(example.loss_mask);
}

// TRL's extract_prompt: the longest common prefix of chosen and rejected (whole messages, or
// characters for texts), a space just before the split going to the responses.
void split_implicit_prompt(const ordered_json& chosen, const ordered_json& rejected, const std::string& where,
                           ordered_json& prompt, ordered_json& chosen_rest, ordered_json& rejected_rest) {
  if (chosen.is_string() && rejected.is_string()) {
    const std::string a = chosen.get<std::string>(), b = rejected.get<std::string>();
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    while (n > 0 && (static_cast<unsigned char>(a[n]) & 0xC0) == 0x80) --n;  // at a character boundary
    if (n == a.size() || n == b.size())
      fail(where,
           "implicit prompt: one of \"chosen\" and \"rejected\" is a prefix of the other, so no response is left");
    if (n > 0 && a[n - 1] == ' ') --n;
    prompt = a.substr(0, n);
    chosen_rest = a.substr(n);
    rejected_rest = b.substr(n);
    return;
  }
  if (!chosen.is_array() || !rejected.is_array())
    fail(where, "\"chosen\" and \"rejected\" must both be strings or both be message lists");
  size_t n = 0;  // messages equal as Python dicts are: same keys and values, in any order
  while (n < chosen.size() && n < rejected.size() && json(chosen[n]) == json(rejected[n])) ++n;
  if (n == chosen.size() || n == rejected.size())
    fail(where, "implicit prompt: one of \"chosen\" and \"rejected\" is a prefix of the other, so no response is left");
  if (n == 0)
    fail(where, "implicit prompt: \"chosen\" and \"rejected\" differ from their first message, so there is no prompt");
  prompt = ordered_json(chosen.begin(), chosen.begin() + static_cast<long>(n));
  chosen_rest = ordered_json(chosen.begin() + static_cast<long>(n), chosen.end());
  rejected_rest = ordered_json(rejected.begin() + static_cast<long>(n), rejected.end());
}

// A preference record's prompt, chosen and rejected, the prompt explicit or implicit.
void preference_parts(const ordered_json& record, const std::string& where, ordered_json& prompt, ordered_json& chosen,
                      ordered_json& rejected) {
  for (const char* key : {"chosen", "rejected"})
    if (!record.contains(key))
      fail(where, std::string("missing \"") + key + "\" (expected prompt, chosen, rejected, or chosen and rejected)");
  if (record.contains("prompt")) {
    prompt = record["prompt"];
    chosen = record["chosen"];
    rejected = record["rejected"];
  } else {
    split_implicit_prompt(record["chosen"], record["rejected"], where, prompt, chosen, rejected);
  }
}

}  // namespace

namespace {

template <class Json>
Json parse_record(const std::string& line, const std::string& where) {
  std::vector<std::set<std::string>> keys;  // per object being parsed, the keys seen so far
  std::string duplicate;
  const typename Json::parser_callback_t check = [&](int, typename Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) keys.emplace_back();
    if (event == Json::parse_event_t::object_end) keys.pop_back();
    if (event == Json::parse_event_t::key && !keys.back().insert(parsed.template get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.template get<std::string>();
    return true;
  };
  Json record;
  try {
    record = Json::parse(line, check);
  } catch (const typename Json::exception& e) {
    fail(where, std::string("not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(where, "duplicate key \"" + duplicate + "\" in one object (a key may appear once)");
  return record;
}

template <class Json>
int64_t for_each_record(const DataSpec& spec, const std::function<void(const Json&, const std::string&)>& use) {
  std::ifstream in(spec.train, std::ios::binary);
  if (!in) fail(spec.train, "data file not found");
  int64_t skipped = 0;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = spec.train + ":" + std::to_string(line_number);
    try {
      use(parse_record<Json>(line, where), where);
    } catch (const UserError& e) {
      if (!spec.skip_bad_records) throw;
      ++skipped;
      std::cerr << "posttrain: skipping bad record: " << e.what() << "\n";
    }
  }
  return skipped;
}

}  // namespace

json parse_json_record(const std::string& line, const std::string& where) { return parse_record<json>(line, where); }
ordered_json parse_ordered_json_record(const std::string& line, const std::string& where) {
  return parse_record<ordered_json>(line, where);
}
int64_t for_each_jsonl_record(const DataSpec& spec, const std::function<void(const json&, const std::string&)>& use) {
  return for_each_record<json>(spec, use);
}
int64_t for_each_ordered_jsonl_record(const DataSpec& spec,
                                      const std::function<void(const ordered_json&, const std::string&)>& use) {
  return for_each_record<ordered_json>(spec, use);
}

namespace {

// Reads spec.train line by line; `tokenize` turns one record into one or more examples (ids + mask).
// Malformed lines fail with file:line, or are skipped and counted with skip_bad_records.
using RecordTokenizer = std::function<void(const ordered_json&, const std::string&, std::vector<std::vector<int32_t>>&,
                                           std::vector<std::vector<uint8_t>>&)>;

TokenizedDataset tokenize_jsonl(const DataSpec& spec, const RecordTokenizer& tokenize) {
  TokenizedDataset data;
  data.skipped = for_each_ordered_jsonl_record(spec, [&](const ordered_json& record, const std::string& where) {
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

std::vector<int32_t> encode_prompt(const ordered_json& prompt, const Tokenizer& tokenizer, const std::string& where,
                                   const ordered_json& tools, const ordered_json& template_kwargs) {
  if (prompt.is_string()) return tokenizer.encode(prompt.get<std::string>());
  Conversation conversation{parse_messages(prompt, where, "prompt"), tools, template_kwargs};
  return render_at(tokenizer, std::move(conversation), /*add_generation_prompt=*/true, where).ids;
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

std::string response_text(const ordered_json& value, const std::string& where, const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  const auto messages = parse_messages(value, where, field);
  if (messages.size() != 1 || messages[0]["role"] != "assistant" || messages[0].size() != 2 ||
      !messages[0].contains("content"))
    fail(where, "\"" + field + "\" must be a string or one assistant message {\"role\", \"content\"}");
  return messages[0]["content"].get<std::string>();
}

PromptResponse encode_prompt_response(const ordered_json& prompt, const ordered_json& response,
                                      const ordered_json& tools, const ordered_json& template_kwargs,
                                      const Tokenizer& tokenizer, const std::string& where, const std::string& field) {
  PromptResponse out;
  if (prompt.is_string()) {
    if (!tools.is_null()) fail(where, "\"tools\" need a conversational prompt (a message list)");
    out.ids = tokenizer.encode(prompt.get<std::string>());
    out.prompt_length = out.ids.size();
    auto response_ids = tokenizer.encode(response_text(response, where, field));
    response_ids.push_back(tokenizer.eos_id());
    out.ids.insert(out.ids.end(), response_ids.begin(), response_ids.end());
    out.loss_mask.assign(out.ids.size(), 0);
    std::fill(out.loss_mask.begin() + static_cast<long>(out.prompt_length), out.loss_mask.end(), 1);
    return out;
  }
  Conversation conversation;
  // An implicit prompt may be empty (chosen and rejected differ from their first message).
  if (!(prompt.is_array() && prompt.empty())) conversation.messages = parse_messages(prompt, where, "prompt");
  conversation.tools = tools;
  conversation.template_kwargs = template_kwargs;
  const size_t prompt_turns = assistant_count(conversation.messages);
  const ordered_json response_messages = response.is_string()
                                             ? ordered_json::array({{{"role", "assistant"}, {"content", response}}})
                                             : parse_messages(response, where, field);
  if (assistant_count(response_messages) == 0) fail(where, "\"" + field + "\" has no assistant message to train on");
  for (const auto& m : response_messages) conversation.messages.push_back(m);
  const RenderedChat chat = render_at(tokenizer, std::move(conversation), false, where);
  const std::vector<std::pair<size_t, size_t>> spans(chat.assistant_spans.begin() + static_cast<long>(prompt_turns),
                                                     chat.assistant_spans.end());
  // Nothing after the response's last span is trained on, and a causal model's earlier tokens do not
  // see it: it is cut.
  out.ids.assign(chat.ids.begin(), chat.ids.begin() + static_cast<long>(spans.back().second));
  out.loss_mask.assign(out.ids.size(), 0);
  for (const auto& [begin, end] : spans) std::fill(out.loss_mask.begin() + begin, out.loss_mask.begin() + end, 1);
  out.prompt_length = spans.front().first;
  return out;
}

namespace {

void add_example(PromptResponse example, std::vector<std::vector<int32_t>>& examples,
                 std::vector<std::vector<uint8_t>>& masks) {
  examples.push_back(std::move(example.ids));
  masks.push_back(std::move(example.loss_mask));
}

}  // namespace

TokenizedDataset tokenize_preference_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  const ordered_json kwargs = ordered_json::parse(spec.chat_template_kwargs);
  std::vector<float> preferences;
  bool any_soft = false;
  TokenizedDataset data = tokenize_jsonl(spec, [&](const ordered_json& record, const std::string& where,
                                                   std::vector<std::vector<int32_t>>& examples,
                                                   std::vector<std::vector<uint8_t>>& masks) {
    if (!record.is_object()) fail(where, "record must be a JSON object");
    float preference = 1.0f;
    if (record.contains("preference")) {
      const auto& p = record["preference"];
      if (!p.is_number() || p.get<double>() < 0.0 || p.get<double>() > 1.0)
        fail(where, "\"preference\" must be a number in [0, 1] (the probability that chosen is better)");
      preference = p.get<float>();
      any_soft = true;
    }
    ordered_json prompt, chosen, rejected;
    preference_parts(record, where, prompt, chosen, rejected);
    const ordered_json tools = parse_tools(record, where);
    add_example(encode_prompt_response(prompt, chosen, tools, kwargs, tokenizer, where, "chosen"), examples, masks);
    add_example(encode_prompt_response(prompt, rejected, tools, kwargs, tokenizer, where, "rejected"), examples, masks);
    preferences.push_back(preference);
  });
  if (any_soft) data.preferences = std::move(preferences);
  return data;
}

TokenizedDataset tokenize_unpaired_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  const ordered_json kwargs = ordered_json::parse(spec.chat_template_kwargs);
  std::vector<uint8_t> labels;
  TokenizedDataset data = tokenize_jsonl(spec, [&](const ordered_json& record, const std::string& where,
                                                   std::vector<std::vector<int32_t>>& examples,
                                                   std::vector<std::vector<uint8_t>>& masks) {
    if (!record.is_object()) fail(where, "record must be a JSON object");
    const ordered_json tools = parse_tools(record, where);
    if (record.contains("completion")) {
      if (!record.contains("prompt")) fail(where, "missing \"prompt\"");
      if (!record.contains("label") || !record["label"].is_boolean())
        fail(where, "\"label\" must be true (desirable) or false (undesirable)");
      add_example(
          encode_prompt_response(record["prompt"], record["completion"], tools, kwargs, tokenizer, where, "completion"),
          examples, masks);
      labels.push_back(record["label"].get<bool>());
    } else if (record.contains("chosen") || record.contains("rejected")) {
      ordered_json prompt, chosen, rejected;
      preference_parts(record, where, prompt, chosen, rejected);
      add_example(encode_prompt_response(prompt, chosen, tools, kwargs, tokenizer, where, "chosen"), examples, masks);
      add_example(encode_prompt_response(prompt, rejected, tools, kwargs, tokenizer, where, "rejected"), examples,
                  masks);
      labels.push_back(1);
      labels.push_back(0);
    } else {
      fail(where, "expected {\"prompt\", \"completion\", \"label\"} or a preference pair (chosen, rejected)");
    }
  });
  data.labels = std::move(labels);
  return data;
}

PromptDataset read_prompt_jsonl(const DataSpec& spec, const Tokenizer& tokenizer) {
  const ordered_json kwargs = ordered_json::parse(spec.chat_template_kwargs);
  PromptDataset data;
  data.skipped = for_each_ordered_jsonl_record(spec, [&](const ordered_json& record, const std::string& where) {
    if (!record.is_object()) fail(where, "record must be a JSON object");
    if (!record.contains("prompt")) fail(where, "missing \"prompt\" (a string or a message list)");
    auto ids = encode_prompt(record["prompt"], tokenizer, where, parse_tools(record, where), kwargs);
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
  const ordered_json kwargs = ordered_json::parse(spec.chat_template_kwargs);
  return tokenize_jsonl(
      spec, [&](const ordered_json& record, const std::string& where, std::vector<std::vector<int32_t>>& examples,
                std::vector<std::vector<uint8_t>>& masks) {
        std::vector<int32_t> ids;
        std::vector<uint8_t> mask;
        tokenize_record(record, spec.format, kwargs, tokenizer, where, ids, mask);
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
  // What the examples hold depends on the chat template as much as on tokenizer.json (editing
  // tokenizer_config.json changes no tokenizer.json byte), so a template joins the key.
  const std::string rendering_sha256 =
      tokenizer.chat_template().empty()
          ? tokenizer_sha256
          : sha256_hex(tokenizer_sha256 + "\nchat_template " + chat_rendering(tokenizer) + "\n" +
                       spec.chat_template_kwargs + "\n" + tokenizer.chat_template());
  ShardInfo wanted{rendering_sha256, sha256_file(spec.train), format, spec.max_length};
  fs::create_directories(cache_dir);
  const std::string path =
      (fs::path(cache_dir) / ("sft-" + wanted.source_sha256.substr(0, 16) + "-" + rendering_sha256.substr(0, 16) + "-" +
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
