// method: constitutional on the tiny base with the quick-start red-team prompts. SL: the recorded
// generations chain (round r's revision is round r+1's answer), the SFT data is the last revision, the
// run trains and keeps the prompt file as its data. RL: every pair's soft label is the judge's
// both-orders preference, recomputed here from the base's log-likelihoods; bad options are errors.
#include <catch2/catch.hpp>

#include <H5Cpp.h>

#include <cmath>
#include <fstream>
#include <set>

#include "datasets/h5_io.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/tokenizer.h"
#include "tests/test_util.h"
#include "trainers/constitution.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " +
                   test::source_dir() + "/recipes/quickstart/constitutional.yaml train.steps=2 " + args);
}

std::vector<nlohmann::json> jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// log p(continuation | prefix) as the difference of two whole-sequence log-likelihoods.
double continuation_ll(posttrain::QwenForCausalLMImpl& model, const std::vector<int32_t>& prefix,
                       const std::vector<int32_t>& continuation) {
  std::vector<int64_t> whole(prefix.begin(), prefix.end()), head(prefix.begin(), prefix.end());
  whole.insert(whole.end(), continuation.begin(), continuation.end());
  double sum_whole = 0, sum_head = 0;
  for (double v : posttrain::sequence_logprobs(model, whole)) sum_whole += v;
  for (double v : posttrain::sequence_logprobs(model, head)) sum_head += v;
  return sum_whole - sum_head;
}

}  // namespace

TEST_CASE("SL-CAI records every critique and revision and fine-tunes on the last revisions", "[trainers][cai]") {
  test::TempDir tmp("cai-sl");
  auto r = cli("output_dir=" + tmp / "run");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto manifest = nlohmann::json::parse(test::read_text(tmp / "run/manifest.json"));
  CHECK(manifest["status"] == "completed");
  CHECK(manifest["data"]["train"].get<std::string>().find("red_team_prompts.jsonl") != std::string::npos);
  CHECK(manifest["data"]["generated"]["examples"] == 8);

  H5::H5File file(tmp / "run/cai/generations.h5", H5F_ACC_RDONLY);
  const auto rounds = posttrain::read_vector<int64_t>(file, "round", H5::PredType::NATIVE_INT64);
  const auto index = posttrain::read_vector<int64_t>(file, "prompt_index", H5::PredType::NATIVE_INT64);
  const auto answers = posttrain::read_string_column(file, "answer");
  const auto revisions = posttrain::read_string_column(file, "revision");
  const auto principles = posttrain::read_string_column(file, "principle");
  REQUIRE(rounds.size() == 16);  // 8 prompts x 2 rounds
  std::set<std::string> names(principles.begin(), principles.end());
  for (const auto& n : names) CHECK(std::set<std::string>{"harmless", "honest", "helpful", "concise"}.count(n) == 1);
  for (size_t row = 0; row < 8; ++row) {
    CHECK(rounds[row] == 0);
    CHECK(rounds[row + 8] == 1);
    CHECK(index[row] == index[row + 8]);
    CHECK(answers[row + 8] == revisions[row]);  // round 1 critiques round 0's revision
  }
  const auto examples = jsonl(tmp / "run/cai/sl_data.jsonl");
  REQUIRE(examples.size() == 8);
  for (size_t i = 0; i < 8; ++i) CHECK(examples[i]["messages"][1]["content"] == revisions[8 + i]);
  CHECK(test::run_metrics(tmp / "run").size() == 2);
}

TEST_CASE("RL-CAI labels each pair with the judge's preference averaged over both orders", "[trainers][cai]") {
  test::TempDir tmp("cai-rl");
  auto r = cli("constitutional.phase=rl constitutional.rounds=1 output_dir=" + tmp / "run");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto pairs = jsonl(tmp / "run/cai/preferences.jsonl");
  REQUIRE(!pairs.empty());
  const auto manifest = nlohmann::json::parse(test::read_text(tmp / "run/manifest.json"));
  CHECK(manifest["cai"]["pairs"] == pairs.size());

  // The judge is the base: recompute the first pair's label from its log-likelihoods.
  const std::string base = test::test_cache_dir() + "/bases/tiny-seed0";
  auto judge = posttrain::load_model(base);
  judge->eval();
  const auto tokenizer = posttrain::Tokenizer::from_dir(base);
  const auto constitution = posttrain::load_constitution(test::source_dir() + "/recipes/constitutions/default.yaml");
  const auto& pair = pairs[0];
  const posttrain::Principle* principle = nullptr;
  for (const auto& p : constitution.principles)
    if (p.name == pair["principle"]) principle = &p;
  REQUIRE(principle != nullptr);
  const std::string prompt = pair["prompt"][0]["content"], chosen = pair["chosen"], rejected = pair["rejected"];
  const auto a = tokenizer.encode(" (A)"), b = tokenizer.encode(" (B)");
  const auto cr = tokenizer.encode(posttrain::comparison_prompt(prompt, chosen, rejected, *principle));
  const auto rc = tokenizer.encode(posttrain::comparison_prompt(prompt, rejected, chosen, *principle));
  // P(chosen better) shown first: softmax over (A, B); shown second: softmax's B entry.
  const double first = 1 / (1 + std::exp(continuation_ll(*judge, cr, b) - continuation_ll(*judge, cr, a)));
  const double second = 1 / (1 + std::exp(continuation_ll(*judge, rc, a) - continuation_ll(*judge, rc, b)));
  CHECK(pair["preference"].get<double>() == Approx(0.5 * (first + second)).epsilon(1e-4));
  for (const auto& p : pairs) {
    CHECK(p["preference"].get<double>() >= 0.5);
    CHECK(p["preference"].get<double>() <= 1.0);
  }

  // train_with: reward turns the same AI labels into a reward model (for PPO afterwards).
  auto rm = cli("constitutional.phase=rl constitutional.train_with=reward output_dir=" + tmp / "rm");
  INFO(rm.output);
  REQUIRE(rm.exit_code == 0);
  const auto config = nlohmann::json::parse(test::read_text(tmp / "rm/final/config.json"));
  CHECK(config["architectures"][0].get<std::string>().find("ForSequenceClassification") != std::string::npos);
  CHECK(test::read_text(tmp / "rm/cai/preferences.jsonl") == test::read_text(tmp / "run/cai/preferences.jsonl"));
}

TEST_CASE("constitutional rejects a bad phase, a missing constitution and unused sections", "[trainers][cai]") {
  test::TempDir tmp("cai-bad");
  auto phase = cli("constitutional.phase=both output_dir=" + tmp / "a");
  CHECK(phase.exit_code != 0);
  CHECK(phase.output.find("constitutional.phase") != std::string::npos);
  auto missing = cli("constitutional.constitution=nowhere.yaml output_dir=" + tmp / "b");
  CHECK(missing.exit_code != 0);
  CHECK(missing.output.find("nowhere.yaml") != std::string::npos);
  auto unused = cli("constitutional.dpo.beta=0.2 output_dir=" + tmp / "c");
  CHECK(unused.exit_code != 0);
  CHECK(unused.output.find("constitutional.dpo") != std::string::npos);
}
