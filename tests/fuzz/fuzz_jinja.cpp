// libFuzzer target: any bytes as a Jinja template (a model's chat_template, a task file's prompt),
// parsed and rendered in both environments posttrain offers (transformers' chat templates and
// lm-eval's), with a conversation and a doc as context. Every input renders or is a UserError;
// never a crash, a hang or unbounded memory (the engine caps depth, repetition and output).
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/jinja.h"

namespace {
const nlohmann::ordered_json& context() {
  static const auto c = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>&"},
                 {"role": "assistant", "content": "<think>\nx\n</think>\n\nHello", "tool_calls": [
                   {"type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": [2.5, null]}}}]},
                 {"role": "tool", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "", "eos_token": "<|im_end|>",
    "question": "What is 2 + 2?", "choices": {"text": ["3", "4"], "label": ["A", "B"]}, "answer": 1})");
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  for (const auto& options : {posttrain::chat_template_options(), posttrain::lm_eval_options()}) {
    try {
      const posttrain::JinjaTemplate tmpl(source, "fuzz.jinja", options);
      tmpl.render(context());
    } catch (const posttrain::UserError&) {
    }
  }
  return 0;
}
