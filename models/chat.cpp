#include "models/chat.h"

#include "core/error.h"

namespace posttrain {

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  const int32_t im_start = tokenizer.require_token("<|im_start|>");
  const int32_t im_end = tokenizer.require_token("<|im_end|>");
  const std::vector<int32_t> newline = tokenizer.encode("\n");
  RenderedChat out;
  auto append = [&](const std::vector<int32_t>& ids) { out.ids.insert(out.ids.end(), ids.begin(), ids.end()); };

  for (const auto& message : messages) {
    if (message.role != "system" && message.role != "user" && message.role != "assistant" && message.role != "tool")
      throw UserError("chat: unknown role \"" + message.role + "\" (use system, user, assistant or tool)");
    out.text += "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n";
    out.ids.push_back(im_start);
    append(tokenizer.encode(message.role + "\n"));
    const size_t begin = out.ids.size();
    append(tokenizer.encode(message.content));
    out.ids.push_back(im_end);
    if (message.role == "assistant") out.assistant_spans.emplace_back(begin, out.ids.size());
    append(newline);
  }
  if (add_generation_prompt) {
    out.text += "<|im_start|>assistant\n";
    out.ids.push_back(im_start);
    append(tokenizer.encode("assistant\n"));
  }
  return out;
}

}  // namespace posttrain
