// Chat rendering with the model's own template. The text must be the template's (core/jinja.h is
// peer-tested against python3-jinja2 in tests/core/test_jinja.cpp); the assistant spans, the tokens
// trained on, are checked here against spans found by plain string search in the text and against
// the hand-written ChatML renderer, neither of which reads {% generation %} blocks.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/jinja.h"
#include "models/chat.h"
#include "tests/test_util.h"

namespace {

using nlohmann::ordered_json;
using posttrain::Conversation;
using posttrain::RenderedChat;
using posttrain::Tokenizer;

const Tokenizer& qwen3() {
  static const Tokenizer tokenizer = Tokenizer::from_dir(test::tokenizer_dir());
  return tokenizer;
}

std::vector<std::string> span_texts(const Tokenizer& tokenizer, const RenderedChat& chat) {
  std::vector<std::string> out;
  for (const auto& [begin, end] : chat.assistant_spans)
    out.push_back(tokenizer.decode(
        std::vector<int32_t>(chat.ids.begin() + static_cast<long>(begin), chat.ids.begin() + static_cast<long>(end))));
  return out;
}

// Qwen's assistant outputs found by string search: after each "<|im_start|>assistant\n", through the
// next "<|im_end|>".
std::vector<std::string> assistant_outputs(const std::string& text) {
  const std::string header = "<|im_start|>assistant\n", end = "<|im_end|>";
  std::vector<std::string> out;
  for (size_t at = text.find(header); at != std::string::npos; at = text.find(header, at + 1)) {
    const size_t begin = at + header.size();
    const size_t stop = text.find(end, begin);
    REQUIRE(stop != std::string::npos);
    out.push_back(text.substr(begin, stop + end.size() - begin));
  }
  return out;
}

Conversation conversation(const ordered_json& messages, const ordered_json& tools = nullptr) {
  return Conversation{messages, tools};
}

const ordered_json kTwoTurns = ordered_json::parse(R"([
  {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 2+2?"},
  {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"},
  {"role": "assistant", "content": "6, of course."}])");

}  // namespace

TEST_CASE("Qwen3's own template: the text is the template's, the spans are the assistant outputs", "[models][chat]") {
  const Tokenizer& tokenizer = qwen3();
  REQUIRE_FALSE(tokenizer.chat_template().empty());
  // The fetched tokenizer's template is the one posttrain knows (its {% generation %} twin is used).
  CHECK(posttrain::chat_rendering(tokenizer) == "qwen3 training template");
  const posttrain::JinjaTemplate original(tokenizer.chat_template(), "qwen3", posttrain::chat_template_options());
  const auto corpus = ordered_json::parse(test::read_text(test::source_dir() + "/tests/core/jinja_corpus.json"));
  int checked = 0, developer = 0;
  for (const auto& c : corpus["conversations"]) {
    if (c.contains("enable_thinking")) continue;  // a template argument render_chat does not pass
    const ordered_json tools = c.contains("tools") ? c["tools"] : ordered_json();
    bool has_developer = false;
    for (const auto& m : c["messages"]) has_developer |= m["role"] == "developer";
    INFO(c["messages"].dump());
    if (has_developer) {  // Qwen3's template drops the role: refused, not silently lost
      CHECK_THROWS_WITH(posttrain::render_conversation(tokenizer, conversation(c["messages"], tools), false),
                        Catch::Contains("leaves messages[") && Catch::Contains("developer"));
      ++developer;
      continue;
    }
    const RenderedChat chat = posttrain::render_conversation(tokenizer, conversation(c["messages"], tools), false);
    ordered_json context = {
        {"messages", c["messages"]}, {"tools", tools}, {"add_generation_prompt", false}, {"eos_token", "<|im_end|>"}};
    CHECK(chat.text == original.render(context).text);
    CHECK(tokenizer.decode(chat.ids) == tokenizer.decode(tokenizer.encode(chat.text)));  // the pieces are the text
    CHECK(span_texts(tokenizer, chat) == assistant_outputs(chat.text));
    ++checked;
  }
  CHECK(checked >= 40);
  CHECK(developer > 0);

  // A finished last turn carries Qwen3's empty think block, trained on as apply_chat_template shows it.
  const RenderedChat chat = posttrain::render_conversation(tokenizer, conversation(kTwoTurns), false);
  CHECK(span_texts(tokenizer, chat) ==
        std::vector<std::string>{"4.<|im_end|>", "<think>\n\n</think>\n\n6, of course.<|im_end|>"});
  // The generation prompt is the template's.
  const RenderedChat prompt = posttrain::render_conversation(
      tokenizer, conversation(ordered_json::parse(R"([{"role":"user","content":"Hi"}])")), true);
  CHECK(prompt.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(prompt.assistant_spans.empty());
}

TEST_CASE("a template without generation blocks: spans from prefix differences equal hand-written ChatML",
          "[models][chat]") {
  const Tokenizer chatml = qwen3().with_chat_template("", "");  // the hand-written fallback
  CHECK(posttrain::chat_rendering(chatml) == "chatml");
  const std::string source =
      "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
      "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  const Tokenizer templated = qwen3().with_chat_template(source, "chatml.jinja");
  CHECK(posttrain::chat_rendering(templated) == "prefix differences");
  const RenderedChat expected = posttrain::render_conversation(chatml, conversation(kTwoTurns), false);
  const RenderedChat got = posttrain::render_conversation(templated, conversation(kTwoTurns), false);
  CHECK(got.text == expected.text);
  CHECK(got.ids == expected.ids);
  CHECK(got.assistant_spans == expected.assistant_spans);  // the "\n" after <|im_end|> is not trained
  CHECK(span_texts(chatml, expected) == std::vector<std::string>{"4.<|im_end|>", "6, of course.<|im_end|>"});

  // The same template with {% generation %} blocks gives the same spans from the blocks.
  const std::string tagged =
      "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
      "{%- if message.role == 'assistant' %}{% generation %}{{- message.content + '<|im_end|>' }}{% endgeneration %}"
      "{%- else %}{{- message.content + '<|im_end|>' }}{%- endif %}{{- '\\n' }}{%- endfor %}";
  const Tokenizer with_blocks = qwen3().with_chat_template(tagged, "tagged.jinja");
  CHECK(posttrain::chat_rendering(with_blocks) == "generation blocks");
  const RenderedChat blocks = posttrain::render_conversation(with_blocks, conversation(kTwoTurns), false);
  CHECK(blocks.ids == expected.ids);
  CHECK(blocks.assistant_spans == expected.assistant_spans);

  // A template that renders earlier turns differently once later ones follow (it marks all but the
  // last answer) gives no trustworthy prefix: refused with the remedy.
  const std::string hiding =
      "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
      "{{- message.content if (loop.last or message.role != 'assistant') else '(earlier) ' + message.content }}"
      "{{- '<|im_end|>\\n' }}"
      "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  CHECK_THROWS_WITH(posttrain::render_conversation(qwen3().with_chat_template(hiding, "hiding.jinja"),
                                                   conversation(kTwoTurns), false),
                    Catch::Contains("hiding.jinja") && Catch::Contains("{% generation %}"));
  // Blocks on some assistant turns only: refused, not half-trained.
  const std::string partial =
      "{%- for message in messages %}{%- if loop.index0 == 2 %}{% generation %}{{ message.content }}"
      "{% endgeneration %}{%- else %}{{ message.content }}{%- endif %}{%- endfor %}";
  CHECK_THROWS_WITH(posttrain::render_conversation(qwen3().with_chat_template(partial, "partial.jinja"),
                                                   conversation(kTwoTurns), false),
                    Catch::Contains("1 spans for 2 assistant messages"));
}

TEST_CASE("ChatML without a template refuses what it cannot show", "[models][chat]") {
  const Tokenizer chatml = qwen3().with_chat_template("", "");
  const auto calls = ordered_json::parse(
      R"([{"role":"user","content":"Weather?"},{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"w","arguments":{}}}]}])");
  CHECK_THROWS_WITH(posttrain::render_conversation(chatml, conversation(calls), false), Catch::Contains("tool_calls"));
  CHECK_THROWS_WITH(posttrain::render_conversation(
                        chatml, conversation(kTwoTurns, ordered_json::array({{{"type", "function"}}})), false),
                    Catch::Contains("tools"));
  CHECK_THROWS_WITH(posttrain::render_conversation(
                        chatml, conversation(ordered_json::parse(R"([{"role":"developer","content":"x"}])")), false),
                    Catch::Contains("developer"));
  // With Qwen3's template the tool call is rendered (and trained on), content or not.
  const RenderedChat chat = posttrain::render_conversation(qwen3(), conversation(calls), false);
  CHECK(span_texts(qwen3(), chat) ==
        std::vector<std::string>{
            "<think>\n\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {}}\n</tool_call><|im_end|>"});
}

TEST_CASE("answers are read after a leading reasoning block", "[models][chat]") {
  using posttrain::answer_after_reasoning;
  CHECK(answer_after_reasoning("<think>\n\n</think>\n\nI can't help.") == "I can't help.");
  CHECK(answer_after_reasoning("  <think>why</think>yes") == "yes");
  CHECK(answer_after_reasoning("<think>still thinking") == "");  // the budget ran out mid-thought
  CHECK(answer_after_reasoning("No block. <think>x</think>y") == "No block. <think>x</think>y");
  CHECK(answer_after_reasoning("") == "");
  CHECK(answer_after_reasoning("<think>a</think>\n\n") == "");
}
