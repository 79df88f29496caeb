// The CLI's contracts: --help everywhere, JSON output shapes, exit code 2 on bad flags and input.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

namespace {

// One tiny base shared by the CLI tests (init-base is itself under test here).
const std::string& tiny_base() {
  static test::TempDir tmp("cli");
  static const std::string dir = [] {
    const std::string out = tmp / "tiny";
    auto result = test::run(test::posttrain_bin() + " init-base --preset tiny --seed 3 --out " + out);
    if (result.exit_code != 0) FAIL("init-base failed: " << result.output);
    return out;
  }();
  return dir;
}

}  // namespace

TEST_CASE("every subcommand has --help", "[apps][cli]") {
  for (const char* command :
       {"init-base", "logprobs", "generate", "tokenize", "run", "launch", "methods", "prepare-data", "score"}) {
    auto result = test::run(test::posttrain_bin() + " " + command + " --help");
    INFO(command << ": " << result.output);
    CHECK(result.exit_code == 0);
    CHECK(result.output.find("usage: posttrain " + std::string(command)) != std::string::npos);
  }
  auto top = test::run(test::posttrain_bin() + " --help");
  CHECK(top.exit_code == 0);
  CHECK(top.output.find("init-base") != std::string::npos);
  CHECK(test::run(test::posttrain_bin()).exit_code == 2);
  CHECK(test::run(test::posttrain_bin() + " frobnicate").exit_code == 2);
  // One registry: methods, preference losses, advantage estimators and reward functions are listed.
  auto listed = test::run(test::posttrain_bin() + " methods");
  for (const char* name : {"sft", "dpo", "kto", "reward", "grpo", "ppo", "simpo", "rloo", "reinforce++", "exact_match",
                           "regex", "reward_model", "length_penalty"})
    CHECK(listed.output.find(std::string("  ") + name + " ") != std::string::npos);
}

TEST_CASE("init-base is deterministic in the seed and writes a HF folder", "[apps][cli]") {
  test::TempDir tmp("init");
  for (const char* name : {"a", "b"}) {
    auto r = test::run(test::posttrain_bin() + " init-base --preset tiny --seed 3 --out " + tmp / name);
    REQUIRE(r.exit_code == 0);
  }
  CHECK(test::read_text(tmp / "a/model.safetensors") == test::read_text(tiny_base() + "/model.safetensors"));
  CHECK(test::read_text(tmp / "a/model.safetensors") == test::read_text(tmp / "b/model.safetensors"));
  for (const char* file : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    CHECK(test::fs::exists(tmp / (std::string("a/") + file)));
  auto other = test::run(test::posttrain_bin() + " init-base --preset tiny --seed 4 --out " + tmp / "c");
  REQUIRE(other.exit_code == 0);
  CHECK(test::read_text(tmp / "c/model.safetensors") != test::read_text(tmp / "a/model.safetensors"));
  auto again = test::run(test::posttrain_bin() + " init-base --preset tiny --out " + tmp / "a");
  CHECK(again.exit_code == 2);
  CHECK(again.output.find("already exists") != std::string::npos);
  auto bad = test::run(test::posttrain_bin() + " init-base --preset huge --out " + tmp / "d");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("unknown preset \"huge\"") != std::string::npos);
}

TEST_CASE("logprobs, generate and tokenize print the documented JSON", "[apps][cli]") {
  const std::string model = tiny_base();
  auto lp = test::run(test::posttrain_bin() + " logprobs --model " + model + " --ids 9707,11,1879,0");
  REQUIRE(lp.exit_code == 0);
  auto lp_json = nlohmann::json::parse(lp.output);
  REQUIRE(lp_json["logprobs"].size() == 3);
  for (const auto& v : lp_json["logprobs"]) CHECK(v.get<double>() < 0.0);
  // --text tokenizes first: "Hello, world!" is 9707,11,1879,0 in Qwen3's vocabulary.
  auto lp_text = test::run(test::posttrain_bin() + " logprobs --model " + model + " --text 'Hello, world!'");
  REQUIRE(lp_text.exit_code == 0);
  CHECK(nlohmann::json::parse(lp_text.output) == lp_json);

  auto gen = test::run(test::posttrain_bin() + " generate --model " + model + " --prompt Hi --chat --max-new-tokens 4");
  REQUIRE(gen.exit_code == 0);
  auto gen_json = nlohmann::json::parse(gen.output);
  CHECK(gen_json["ids"].size() <= 4);
  CHECK(gen_json["text"].is_string());
  auto sampled = [&](int seed) {
    return test::run(test::posttrain_bin() + " generate --model " + model +
                     " --ids 1,2,3 --max-new-tokens 6 --temperature 1 --top-k 50 --seed " + std::to_string(seed))
        .output;
  };
  CHECK(sampled(5) == sampled(5));
  CHECK(sampled(5) != sampled(6));

  test::TempDir tmp("tok");
  test::write_text(tmp / "in.jsonl", "{\"text\": \"Hello, world!\"}\n\n{\"text\": \"<|im_start|>x\"}\n");
  auto enc = test::run(test::posttrain_bin() + " tokenize --model " + model + " < " + tmp / "in.jsonl");
  REQUIRE(enc.exit_code == 0);
  CHECK(enc.output == "{\"ids\":[9707,11,1879,0]}\n{\"ids\":[151644,87]}\n");
  test::write_text(tmp / "ids.jsonl", enc.output);
  auto dec = test::run(test::posttrain_bin() + " tokenize --decode --model " + model + " < " + tmp / "ids.jsonl");
  REQUIRE(dec.exit_code == 0);
  CHECK(dec.output == "{\"text\":\"Hello, world!\"}\n{\"text\":\"<|im_start|>x\"}\n");
}

TEST_CASE("bad flags and bad input lines exit with code 2 and say where", "[apps][cli]") {
  const std::string model = tiny_base();
  auto bin = test::posttrain_bin();
  struct Case {
    std::string command, needle;
  };
  test::TempDir tmp("badcli");
  test::write_text(tmp / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n");
  test::write_text(tmp / "notjson.jsonl", "{\"text\": \"ok\"}\nnot json\n");
  const std::vector<Case> cases = {
      {bin + " logprobs --model " + model + " --ids 1,x,3", "--ids: \"x\" is not a token id"},
      {bin + " logprobs --model " + model + " --ids 1,2 --text hi", "exactly one of --ids or --text"},
      {bin + " logprobs --model " + model + " --ids 1,999999", "outside the model's vocabulary"},
      {bin + " logprobs --model " + model + " --ids 1,2 --bogus 3", "unrecognised option '--bogus'"},
      {bin + " logprobs --ids 1,2", "--model"},
      {bin + " logprobs --model " + model + " --ids 1,2 --device cuda", "CUDA is not available"},
      {bin + " generate --model " + model + " --ids 1 --top-p 0", "top_p must be in (0, 1]"},
      {bin + " generate --model " + model + " --ids 1 --temperature -1", "--temperature must be >= 0"},
      {bin + " generate --model " + model + " --ids 1 --temperature nan", "temperature must be a finite number >= 0"},
      {bin + " generate --model " + model + " --ids 1 --temperature inf", "temperature must be a finite number >= 0"},
      {bin + " generate --model " + model + " --ids 1 --top-p -0.5", "top_p must be in (0, 1]"},
      {bin + " generate --model " + model + " --ids 1 --top-p nan", "top_p must be in (0, 1]"},
      {bin + " generate --model " + model + " --ids 1 --top-k -1", "top_k must be >= 0"},
      {bin + " generate --model " + model + " --ids 1 --max-new-tokens 1000000000000",
       "exceed the model's max_position_embeddings"},
      {"printf '{\"text\": \"a\", \"text\": \"b\"}\\n' | " + bin + " tokenize --model " + model,
       "stdin:1: duplicate key \"text\""},
      {bin + " tokenize --model " + model + " < " + tmp / "bad.jsonl", "stdin:2: expected {\"text\""},
      {bin + " tokenize --model " + model + " < " + tmp / "notjson.jsonl", "stdin:2: not valid JSON"},
      {"printf '{\"ids\":[-5]}\\n' | " + bin + " tokenize --decode --model " + model, "stdin:1: decode: token id -5"},
  };
  for (const auto& c : cases) {
    auto result = test::run(c.command);
    INFO(c.command << "\n" << result.output);
    if (c.needle.find("CUDA") != std::string::npos && result.exit_code == 0) continue;  // a CUDA machine
    CHECK(result.exit_code == 2);
    CHECK(result.output.find(c.needle) != std::string::npos);
  }
}
