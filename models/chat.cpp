#include "models/chat.h"

#include <map>
#include <memory>
#include <mutex>
#include <regex>

#include "core/error.h"
#include "core/files.h"
#include "core/jinja.h"
#include "models/chat_templates.h"

namespace posttrain {

namespace {

using nlohmann::ordered_json;
using ByteSpans = std::vector<std::pair<size_t, size_t>>;

// sha256 of the chat_template of Qwen3's tokenizer_config.json (the one scripts/fetch-tokenizer.sh
// fetches; tests/models/test_chat.cpp checks the two still agree). A tokenizer with exactly this
// template renders with its {% generation %} twin.
constexpr const char* kQwen3TemplateSha256 = "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5";

enum class SpanSource { kGenerationBlocks, kPrefixDifferences };

struct PreparedTemplate {
  JinjaTemplate jinja;
  SpanSource spans;
  std::string origin;
  std::string rendering;  // chat_rendering()'s answer
};

bool has_generation_blocks(const std::string& source) {
  static const std::regex tag(R"(\{%[-+]?\s*generation\s*[-+]?%\})");
  return std::regex_search(source, tag);
}

// Parsing a 4 kB template costs more than rendering it, and every example is rendered: one parse
// per distinct template, shared by all threads.
std::shared_ptr<const PreparedTemplate> prepared_template(const Tokenizer& tokenizer) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const PreparedTemplate>> cache;
  const std::string& source = tokenizer.chat_template();
  const std::string key = tokenizer.chat_template_origin() + '\0' + source;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::shared_ptr<const PreparedTemplate> prepared;
  if (sha256_hex(source) == kQwen3TemplateSha256) {
    prepared = std::make_shared<const PreparedTemplate>(
        PreparedTemplate{JinjaTemplate(qwen3_training_chat_template(), "models/chat_templates/qwen3_training.jinja",
                                       chat_template_options()),
                         SpanSource::kGenerationBlocks, tokenizer.chat_template_origin(), "qwen3 training template"});
  } else {
    const bool blocks = has_generation_blocks(source);
    prepared = std::make_shared<const PreparedTemplate>(
        PreparedTemplate{JinjaTemplate(source, tokenizer.chat_template_origin(), chat_template_options()),
                         blocks ? SpanSource::kGenerationBlocks : SpanSource::kPrefixDifferences,
                         tokenizer.chat_template_origin(), blocks ? "generation blocks" : "prefix differences"});
  }
  cache.emplace(key, prepared);
  return prepared;
}

// The variables transformers' apply_chat_template gives a template.
JinjaRender render_template(const PreparedTemplate& prepared, const Tokenizer& tokenizer, const ordered_json& messages,
                            const Conversation& conversation, bool add_generation_prompt) {
  ordered_json context = ordered_json::object();
  context["messages"] = messages;
  context["tools"] = conversation.tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  if (!tokenizer.bos_token().empty()) context["bos_token"] = tokenizer.bos_token();
  if (!tokenizer.eos_token().empty()) context["eos_token"] = tokenizer.eos_token();
  for (const auto& [key, value] : conversation.template_kwargs.items()) context[key] = value;
  return prepared.jinja.render(context);
}

// A template may skip a role it does not know (Qwen3's skips "developer"); training on the rest would
// drop data in silence. Each message's content is swapped for a probe word that no template edits
// (lower-case letters and digits), the conversation rendered once more, and every probe must show.
void check_every_message_shows(const PreparedTemplate& prepared, const Tokenizer& tokenizer,
                               const Conversation& conversation, bool add_generation_prompt) {
  Conversation probed = conversation;
  std::vector<std::pair<size_t, std::string>> probes;
  for (size_t i = 0; i < probed.messages.size(); ++i) {
    auto& m = probed.messages[i];
    if (!m.is_object() || !m.contains("content") || !m["content"].is_string() ||
        m["content"].get<std::string>().empty())
      continue;
    probes.emplace_back(i, "posttrainprobe" + std::to_string(i) + "x7q");
    m["content"] = probes.back().second;
  }
  if (probes.empty()) return;
  const std::string text = render_template(prepared, tokenizer, probed.messages, probed, add_generation_prompt).text;
  for (const auto& [i, probe] : probes)
    if (text.find(probe) == std::string::npos)
      throw UserError(prepared.origin + ": the chat template leaves messages[" + std::to_string(i) + "] (role \"" +
                      conversation.messages[i].value("role", std::string()) +
                      "\") out of its text; use a role the template renders");
}

size_t count_role(const ordered_json& messages, const std::string& role) {
  size_t n = 0;
  for (const auto& m : messages) n += m.value("role", std::string()) == role;
  return n;
}

// Span of each assistant turn from renderings of growing prefixes of the conversation: turn i is
// what rendering turns 0..i adds to rendering turns 0..i-1 with the generation prompt. Whitespace
// after the turn's final special token (ChatML's "\n" after <|im_end|>) is not part of it: the model
// stops at that token.
ByteSpans prefix_difference_spans(const PreparedTemplate& prepared, const Tokenizer& tokenizer,
                                  const Conversation& conversation, const std::string& text) {
  ByteSpans spans;
  const auto& messages = conversation.messages;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].value("role", std::string()) != "assistant") continue;
    ordered_json head = ordered_json::array();  // turns 0..i-1
    for (size_t k = 0; k < i; ++k) head.push_back(messages[k]);
    ordered_json through = head;  // turns 0..i
    through.push_back(messages[i]);
    const std::string before = render_template(prepared, tokenizer, head, conversation, true).text;
    const std::string upto = render_template(prepared, tokenizer, through, conversation, false).text;
    if (upto.compare(0, before.size(), before) != 0 || text.compare(0, upto.size(), upto) != 0)
      throw UserError(prepared.origin + ": the chat template renders the turns before messages[" + std::to_string(i) +
                      "] differently once later turns follow, so the assistant's tokens cannot be found; wrap each "
                      "assistant turn's output in {% generation %} ... {% endgeneration %} (docs/models.md)");
    size_t end = upto.size();
    size_t content_end = end;
    while (content_end > before.size() && std::isspace(static_cast<unsigned char>(upto[content_end - 1])))
      --content_end;
    if (content_end < end) {
      const auto ids = tokenizer.encode(std::string_view(upto).substr(before.size(), content_end - before.size()));
      if (!ids.empty() && tokenizer.is_special(ids.back())) end = content_end;
    }
    spans.emplace_back(before.size(), end);
  }
  return spans;
}

// Tokens of `text` encoded piece by piece between span boundaries; spans become token ranges.
RenderedChat encode_with_spans(const Tokenizer& tokenizer, std::string text, const ByteSpans& spans,
                               const std::string& origin) {
  RenderedChat out;
  auto append = [&](size_t begin, size_t end) {
    const auto ids = tokenizer.encode(std::string_view(text).substr(begin, end - begin));
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
  };
  size_t at = 0;
  for (const auto& [begin, end] : spans) {
    if (begin < at || end < begin || end > text.size())
      throw UserError(origin + ": {% generation %} blocks overlap or nest");
    append(at, begin);
    const size_t first = out.ids.size();
    append(begin, end);
    out.assistant_spans.emplace_back(first, out.ids.size());
    at = end;
  }
  append(at, text.size());
  out.text = std::move(text);
  return out;
}

RenderedChat render_chatml(const Tokenizer& tokenizer, const Conversation& conversation, bool add_generation_prompt) {
  if (!conversation.tools.is_null())
    throw UserError(
        "chat: tools need the model's chat template, and this tokenizer has none (ChatML without a "
        "template shows role and content only)");
  if (!conversation.template_kwargs.empty())
    throw UserError("chat: chat_template_kwargs need the model's chat template, and this tokenizer has none");
  const int32_t im_start = tokenizer.require_token("<|im_start|>");
  const int32_t im_end = tokenizer.require_token("<|im_end|>");
  const std::vector<int32_t> newline = tokenizer.encode("\n");
  RenderedChat out;
  auto append = [&](const std::vector<int32_t>& ids) { out.ids.insert(out.ids.end(), ids.begin(), ids.end()); };

  for (size_t i = 0; i < conversation.messages.size(); ++i) {
    const auto& message = conversation.messages[i];
    const std::string at = "chat: messages[" + std::to_string(i) + "]";
    for (const auto& [key, value] : message.items())
      if (key != "role" && key != "content")
        throw UserError(at + " has \"" + key +
                        "\", which needs the model's chat template; this tokenizer has none "
                        "(ChatML without a template shows role and content only)");
    const std::string role = message.value("role", std::string());
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      throw UserError(at + ": role \"" + role +
                      "\" needs a chat template that knows it; without one, use "
                      "system, user, assistant or tool");
    if (!message.contains("content") || !message["content"].is_string())
      throw UserError(at + ".content must be a string");
    const std::string content = message["content"].get<std::string>();
    out.text += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    out.ids.push_back(im_start);
    append(tokenizer.encode(role + "\n"));
    const size_t begin = out.ids.size();
    append(tokenizer.encode(content));
    out.ids.push_back(im_end);
    if (role == "assistant") out.assistant_spans.emplace_back(begin, out.ids.size());
    append(newline);
  }
  if (add_generation_prompt) {
    out.text += "<|im_start|>assistant\n";
    out.ids.push_back(im_start);
    append(tokenizer.encode("assistant\n"));
  }
  return out;
}

}  // namespace

Conversation to_conversation(const std::vector<ChatMessage>& messages) {
  Conversation conversation;
  for (const auto& m : messages) conversation.messages.push_back({{"role", m.role}, {"content", m.content}});
  return conversation;
}

RenderedChat render_conversation(const Tokenizer& tokenizer, const Conversation& conversation,
                                 bool add_generation_prompt) {
  if (tokenizer.chat_template().empty()) return render_chatml(tokenizer, conversation, add_generation_prompt);
  const auto prepared = prepared_template(tokenizer);
  // TRL's tool-calling form leaves content out of a message that only calls tools; templates such as
  // Qwen3's call string methods on it, so it becomes "" (what they print for it in earlier turns).
  Conversation normalized = conversation;
  for (auto& m : normalized.messages)
    if (m.is_object() && m.contains("tool_calls") && (!m.contains("content") || m["content"].is_null()))
      m["content"] = "";
  const JinjaRender full =
      render_template(*prepared, tokenizer, normalized.messages, normalized, add_generation_prompt);
  check_every_message_shows(*prepared, tokenizer, normalized, add_generation_prompt);
  const size_t assistants = count_role(normalized.messages, "assistant");
  ByteSpans spans;
  if (prepared->spans == SpanSource::kGenerationBlocks) {
    spans = full.generation_spans;
    if (spans.size() != assistants)
      throw UserError(prepared->origin + ": the chat template's {% generation %} blocks gave " +
                      std::to_string(spans.size()) + " spans for " + std::to_string(assistants) +
                      " assistant messages (one per assistant message expected)");
  } else if (assistants > 0) {
    spans = prefix_difference_spans(*prepared, tokenizer, normalized, full.text);
  }
  return encode_with_spans(tokenizer, full.text, spans, prepared->origin);
}

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  return render_conversation(tokenizer, to_conversation(messages), add_generation_prompt);
}

std::string answer_after_reasoning(const std::string& generation) {
  const size_t start = generation.find_first_not_of(" \t\r\n");
  if (start == std::string::npos || generation.compare(start, 7, "<think>") != 0) return generation;
  const size_t end = generation.find("</think>", start);
  if (end == std::string::npos) return "";
  const size_t answer = generation.find_first_not_of('\n', end + 8);
  return answer == std::string::npos ? "" : generation.substr(answer);
}

std::string chat_rendering(const Tokenizer& tokenizer) {
  if (tokenizer.chat_template().empty()) return "chatml";
  return prepared_template(tokenizer)->rendering;
}

}  // namespace posttrain
