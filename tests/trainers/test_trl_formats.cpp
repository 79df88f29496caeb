// TRL's dataset formats as a TRL user writes them: each is read as TRL reads it (the implicit prompt
// is the longest common prefix, tool calls are rendered by the model's template and trained on,
// key order is kept) and trains with its method from the CLI (2 steps on the tiny base).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "datasets/sft_data.h"
#include "models/chat.h"
#include "tests/test_util.h"

namespace {

using nlohmann::ordered_json;
using posttrain::TokenizedDataset;
using posttrain::Tokenizer;

const Tokenizer& qwen3() {
  static const Tokenizer tokenizer = Tokenizer::from_dir(test::tokenizer_dir());
  return tokenizer;
}

std::vector<int32_t> example(const TokenizedDataset& data, int64_t i) {
  return {data.tokens.begin() + data.offsets[i], data.tokens.begin() + data.offsets[i + 1]};
}
std::vector<uint8_t> mask(const TokenizedDataset& data, int64_t i) {
  return {data.loss_mask.begin() + data.offsets[i], data.loss_mask.begin() + data.offsets[i + 1]};
}
// The trained tokens of example i, decoded.
std::string trained(const Tokenizer& tokenizer, const TokenizedDataset& data, int64_t i) {
  std::vector<int32_t> ids;
  const auto all = example(data, i);
  const auto m = mask(data, i);
  for (size_t t = 0; t < all.size(); ++t)
    if (m[t]) ids.push_back(all[t]);
  return tokenizer.decode(ids);
}

posttrain::DataSpec spec_of(const std::string& path) {
  posttrain::DataSpec spec;
  spec.train = path;
  spec.max_length = 512;
  return spec;
}

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

}  // namespace

TEST_CASE("implicit-prompt preference pairs split at the longest common prefix", "[trainers][data][trl]") {
  test::TempDir tmp("trl-implicit");
  const Tokenizer chatml = qwen3().with_chat_template("", "");
  // Texts: the common prefix "The sky is " loses its trailing space to the responses (TRL's rule).
  test::write_text(tmp / "text.jsonl", R"({"chosen": "The sky is blue.", "rejected": "The sky is green."})"
                                       "\n");
  const auto text = posttrain::tokenize_preference_jsonl(spec_of(tmp / "text.jsonl"), chatml);
  REQUIRE(text.size() == 2);
  std::vector<int32_t> expected = chatml.encode("The sky is");
  const size_t prompt_length = expected.size();
  for (int32_t id : chatml.encode(" blue.")) expected.push_back(id);
  expected.push_back(chatml.eos_id());
  CHECK(example(text, 0) == expected);
  CHECK(trained(chatml, text, 0) == " blue.<|im_end|>");
  CHECK(trained(chatml, text, 1) == " green.<|im_end|>");
  const auto first_mask = mask(text, 0);
  CHECK(std::count(first_mask.begin(), first_mask.begin() + static_cast<long>(prompt_length), 1) == 0);

  // Conversations: the prompt is the shared messages (here three, across two turns); the pair
  // tokenizes exactly as the same split written with an explicit prompt.
  const auto chosen = ordered_json::parse(R"([{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},
    {"role":"user","content":"Is the sky green?"},{"role":"assistant","content":"No, it is blue."}])");
  auto rejected = chosen;
  rejected[3]["content"] = "Yes.";
  size_t common = 0;  // the longest common prefix, counted here by hand
  while (chosen[common] == rejected[common]) ++common;
  REQUIRE(common == 3);
  const ordered_json implicit = {{"chosen", chosen}, {"rejected", rejected}};
  const ordered_json explicit_split = {{"prompt", ordered_json(chosen.begin(), chosen.begin() + 3)},
                                       {"chosen", ordered_json(chosen.begin() + 3, chosen.end())},
                                       {"rejected", ordered_json(rejected.begin() + 3, rejected.end())}};
  test::write_text(tmp / "implicit.jsonl", implicit.dump() + "\n");
  test::write_text(tmp / "explicit.jsonl", explicit_split.dump() + "\n");
  for (const Tokenizer* tokenizer : {&chatml, &qwen3()}) {
    const auto a = posttrain::tokenize_preference_jsonl(spec_of(tmp / "implicit.jsonl"), *tokenizer);
    const auto b = posttrain::tokenize_preference_jsonl(spec_of(tmp / "explicit.jsonl"), *tokenizer);
    CHECK(a.tokens == b.tokens);
    CHECK(a.loss_mask == b.loss_mask);
    CHECK(a.offsets == b.offsets);
  }
  // Only the last answer is trained: the earlier assistant turn belongs to the prompt.
  const auto pair = posttrain::tokenize_preference_jsonl(spec_of(tmp / "implicit.jsonl"), chatml);
  CHECK(trained(chatml, pair, 0) == "No, it is blue.<|im_end|>");
  CHECK(trained(chatml, pair, 1) == "Yes.<|im_end|>");

  // No response left, or no prompt: refused with file:line.
  test::write_text(tmp / "same.jsonl", R"({"chosen": "Same.", "rejected": "Same."})"
                                       "\n");
  CHECK_THROWS_WITH(posttrain::tokenize_preference_jsonl(spec_of(tmp / "same.jsonl"), chatml),
                    Catch::Contains("same.jsonl:1") && Catch::Contains("prefix"));
}

TEST_CASE("tool calling data is rendered by the model's template and its calls are trained on",
          "[trainers][data][trl]") {
  test::TempDir tmp("trl-tools");
  // TRL's tool-calling form: tools beside the messages, a call without content, the tool's answer.
  // The arguments' keys are out of alphabetical order: the template must see the file's order.
  test::write_text(
      tmp / "tools.jsonl",
      R"({"messages": [{"role": "user", "content": "Weather in Paris?"},)"
      R"( {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"unit": "C", "city": "Paris"}}}]},)"
      R"( {"role": "tool", "content": "18 degrees"}, {"role": "assistant", "content": "It is 18 C in Paris."}],)"
      R"( "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]})"
      "\n"
      // The same call with "content": "": still rendered, not an empty turn.
      R"({"messages": [{"role": "user", "content": "Weather in Oslo?"},)"
      R"( {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}]})"
      "\n");
  const auto data = posttrain::tokenize_sft_jsonl(spec_of(tmp / "tools.jsonl"), qwen3());
  REQUIRE(data.size() == 2);
  CHECK(trained(qwen3(), data, 0) ==
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"C\", \"city\": \"Paris\"}}\n</tool_call>"
        "<|im_end|><think>\n\n</think>\n\nIt is 18 C in Paris.<|im_end|>");
  CHECK(trained(qwen3(), data, 1) ==
        "<think>\n\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
        "</tool_call><|im_end|>");
  const std::string text = qwen3().decode(example(data, 0));
  CHECK(text.find("# Tools") != std::string::npos);  // the schemas reach the system prompt
  CHECK(text.find("<tool_response>\n18 degrees\n</tool_response>") != std::string::npos);

  // Without a template the calls cannot be shown: refused naming the line, never dropped.
  CHECK_THROWS_WITH(posttrain::tokenize_sft_jsonl(spec_of(tmp / "tools.jsonl"), qwen3().with_chat_template("", "")),
                    Catch::Contains("tools.jsonl:1") && Catch::Contains("tools"));
  // A role the template drops (Qwen3 has no "developer"): refused naming the line.
  test::write_text(
      tmp / "developer.jsonl",
      R"({"messages": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Salut."}]})"
      "\n");
  CHECK_THROWS_WITH(posttrain::tokenize_sft_jsonl(spec_of(tmp / "developer.jsonl"), qwen3()),
                    Catch::Contains("developer.jsonl:1") && Catch::Contains("developer"));
  // Prompt-only RL data with tools: the prompt carries the schemas and ends with the generation prompt.
  test::write_text(
      tmp / "prompts.jsonl",
      R"({"prompt": [{"role": "user", "content": "Weather?"}], "tools": [{"type": "function", "function": {"name": "w"}}], "answer": "x"})"
      "\n");
  const auto prompts = posttrain::read_prompt_jsonl(spec_of(tmp / "prompts.jsonl"), qwen3());
  const std::string prompt = qwen3().decode(prompts.prompts.at(0));
  CHECK(prompt.find("# Tools") != std::string::npos);
  CHECK(prompt.size() > 22);
  CHECK(prompt.substr(prompt.size() - 22) == "<|im_start|>assistant\n");
}

TEST_CASE("completions may hold several messages; only their assistant turns are trained", "[trainers][data][trl]") {
  test::TempDir tmp("trl-multi");
  const Tokenizer chatml = qwen3().with_chat_template("", "");
  test::write_text(
      tmp / "pc.jsonl",
      R"({"prompt": [{"role": "user", "content": "Add 2 and 3."}], "completion": [)"
      R"({"role": "assistant", "content": "Calling add."}, {"role": "tool", "content": "5"}, {"role": "assistant", "content": "It is 5."}]})"
      "\n");
  const auto sft = posttrain::tokenize_sft_jsonl(spec_of(tmp / "pc.jsonl"), chatml);
  CHECK(trained(chatml, sft, 0) == "Calling add.<|im_end|>It is 5.<|im_end|>");
  // The example ends at the last trained token (nothing after it is learned or seen).
  CHECK(mask(sft, 0).back() == 1);
  // Unpaired conversational records (KTO), label read.
  test::write_text(
      tmp / "unpaired.jsonl",
      R"({"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello."}], "label": false})"
      "\n");
  const auto unpaired = posttrain::tokenize_unpaired_jsonl(spec_of(tmp / "unpaired.jsonl"), chatml);
  REQUIRE(unpaired.labels == std::vector<uint8_t>{0});
  CHECK(trained(chatml, unpaired, 0) == "Hello.<|im_end|>");
  // A preference record given to SFT is named as such.
  test::write_text(tmp / "pref.jsonl", R"({"chosen": "a", "rejected": "b"})"
                                       "\n");
  CHECK_THROWS_WITH(posttrain::tokenize_sft_jsonl(spec_of(tmp / "pref.jsonl"), chatml),
                    Catch::Contains("pref.jsonl:1") && Catch::Contains("preference"));
}

TEST_CASE("each TRL format trains with its method", "[trainers][trl]") {
  test::TempDir tmp("trl-train");
  const std::string tools =
      R"({"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "18"}, {"role": "assistant", "content": "18 C."}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})";
  test::write_text(tmp / "tools.jsonl", tools + "\n" + tools + "\n");
  const std::string implicit =
      R"({"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]})";
  test::write_text(tmp / "implicit.jsonl", implicit + "\n" + implicit + "\n" + implicit + "\n" + implicit + "\n");
  const std::string unpaired =
      R"({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}], "label": true})"
      "\n"
      R"({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "5"}], "label": false})";
  test::write_text(tmp / "unpaired.jsonl", unpaired + "\n");
  const std::string common =
      " seed=0 base.preset=tiny train.steps=2 train.batch_size=2 train.micro_batch_size=2"
      " train.warmup_steps=0 checkpoint.every=2 data.max_length=256";
  struct Case {
    std::string method, data;
  };
  for (const Case& c : {Case{"sft", "tools.jsonl"}, Case{"dpo", "implicit.jsonl"}, Case{"reward", "implicit.jsonl"},
                        Case{"kto", "unpaired.jsonl"}}) {
    INFO(c.method << " on " << c.data);
    test::write_text(tmp / (c.method + ".yaml"), "method: " + c.method +
                                                     "\nbase: {preset: tiny, seed: 0}\ndata: {train: " + tmp / c.data +
                                                     "}\ntrain: {steps: 2, lr: 1.0e-3}\n");
    const auto result = cli("run " + tmp / (c.method + ".yaml") + " output_dir=" + tmp / c.method + common);
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    CHECK(test::run_metrics(tmp / c.method).size() >= 2);  // the 2 steps (a reward model adds its eval)
    CHECK(test::fs::exists(tmp / c.method + "/final/config.json"));
  }
}
