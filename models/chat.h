// Qwen's chat format (ChatML) rendered to token ids, with the token span of each assistant turn so
// trainers can put the loss on assistant tokens only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/tokenizer.h"

namespace posttrain {

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

struct RenderedChat {
  std::string text;  // <|im_start|>role\ncontent<|im_end|>\n ... (+ generation prompt)
  std::vector<int32_t> ids;
  // [begin, end) token indices of each assistant turn's content plus its <|im_end|>: the tokens a
  // model must produce after "<|im_start|>assistant\n".
  std::vector<std::pair<size_t, size_t>> assistant_spans;
};

// Each turn is tokenized as "<|im_start|>" + encode(role + "\n") + encode(content) + "<|im_end|>" +
// encode("\n"). Content is tokenized on its own, exactly as the model sees it when it generates after
// the "<|im_start|>assistant\n" prompt; so ids can differ from encode(text) at a turn boundary only
// when content starts with whitespace that would merge with the role's "\n".
// add_generation_prompt appends "<|im_start|>assistant\n".
RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt);

}  // namespace posttrain
