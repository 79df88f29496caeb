// Conversations rendered to token ids the way the model's own chat template renders them, with the
// token span of each assistant turn so trainers can put the loss on what the assistant produced.
//
// With a chat_template (tokenizer_config.json or chat_template.jinja) the text is the template's,
// rendered by core/jinja.h exactly as transformers' apply_chat_template renders it. The assistant
// spans come from the template's {% generation %} blocks; Qwen3's stock template is swapped for its
// twin with those blocks (models/chat_templates/qwen3_training.jinja, proved to render the same
// text); any other template without them gets its spans from prefix differences (the text of turns
// 0..i with the generation prompt, then through turn i), which must be prefixes of the whole
// rendering or the conversation is refused. Without a template: ChatML written here, the format of
// Qwen's models and of the testbed.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "models/tokenizer.h"

namespace posttrain {

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

// A conversation as chat templates take it: message objects as the data holds them (role, content,
// and any of tool_calls, reasoning_content, name, tool_call_id, in the data's key order) and the
// tool schemas of TRL's tool-calling format (null when there are none).
struct Conversation {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;
  // More variables for the template (TRL's chat_template_kwargs, e.g. {"enable_thinking": false}).
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};
Conversation to_conversation(const std::vector<ChatMessage>& messages);

struct RenderedChat {
  std::string text;  // the rendering (+ generation prompt)
  std::vector<int32_t> ids;
  // [begin, end) token indices of each assistant turn's output, in message order: the tokens a
  // model must produce after the generation prompt, through the turn's end token.
  std::vector<std::pair<size_t, size_t>> assistant_spans;
};

// Tokens: the text is encoded in pieces cut at the span boundaries, so a span's tokens are exactly
// those the model produces when it generates from the boundary; ids differ from encode(text) only
// where a pre-token would straddle a boundary (content starting with whitespace after a newline).
// ChatML: each turn is "<|im_start|>" + role + "\n" + content + "<|im_end|>\n", the span content +
// "<|im_end|>"; add_generation_prompt appends "<|im_start|>assistant\n".
// A message with tool_calls and no content is given content "" (templates call string methods on it).
// UserError: a role or field the format cannot show (ChatML: tools, tool_calls, reasoning_content,
// template variables),
// a message the template leaves out of its text, a template error (naming the template's origin).
RenderedChat render_conversation(const Tokenizer& tokenizer, const Conversation& conversation,
                                 bool add_generation_prompt);
// The same for plain role + content messages.
RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt);

// A generation's answer without its leading reasoning block, as reasoning parsers split Qwen3's
// output: the text after "<think> ... </think>" with the newlines after it dropped (as Qwen3's template
// drops them); "" when the block never closes (the token budget ran out mid-thought); the generation
// itself when it does not start with "<think>" (leading whitespace allowed). Scorers read answers, so
// reasoning can neither earn nor lose their credit.
std::string answer_after_reasoning(const std::string& generation);

// How render_conversation finds assistant spans with this tokenizer, for logs and the run record:
// "chatml", "generation blocks", "qwen3 training template" or "prefix differences".
std::string chat_rendering(const Tokenizer& tokenizer);

}  // namespace posttrain
