// Reward model end to end: the step-1 loss equals -log sigmoid(r_c - r_r) + c (r_c + r_r)^2 with
// rewards recomputed here one sequence at a time (no padding, no batching, pooled at the last token by
// hand); the folder is HF's Qwen3ForSequenceClassification layout; a short run generalises to
// held-out pairs; `posttrain score` gives the same numbers as the hand-pooled forward; a run resumed
// from a mid-run checkpoint ends with the same weights.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"
#include "tests/test_util.h"
#include "trainers/rewards.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string recipe() { return test::source_dir() + "/recipes/quickstart/reward.yaml"; }

// The prompt with the generation prompt, then the answer as Qwen3's template shows a finished turn
// (after an empty think block) and <|im_end|>: what training sees, written out by hand.
std::vector<int64_t> pair_ids(const posttrain::Tokenizer& tok, const std::string& question, const std::string& answer) {
  auto prompt = posttrain::render_chat(tok, {{"user", question}}, /*add_generation_prompt=*/true).ids;
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  for (int32_t id : tok.encode("<think>\n\n</think>\n\n" + answer)) ids.push_back(id);
  ids.push_back(*tok.token_to_id("<|im_end|>"));
  return ids;
}

// score . h_last for one unpadded sequence, the dot product written out.
double reward_alone(posttrain::QwenForCausalLMImpl& model, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(ids.size());
  auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto hidden = model.hidden_states(input, torch::arange(n, torch::kInt64).unsqueeze(0));  // [1, n, H]
  auto last = hidden[0][n - 1].to(torch::kFloat64);
  auto w = model.score->weight[0].to(torch::kFloat64);
  double sum = 0;
  for (int64_t i = 0; i < last.size(0); ++i) sum += last[i].item<double>() * w[i].item<double>();
  return sum;
}

const char* kQuestion = "What is the capital of Peru?";
const char* kChosen = "The capital of Peru is Lima.";
const char* kRejected = "I cannot help with that.";

}  // namespace

TEST_CASE("reward step-1 loss is the Bradley-Terry loss of hand-pooled rewards", "[trainers][reward]") {
  test::TempDir tmp("reward-step1");
  test::write_text(tmp / "one.jsonl", std::string(R"({"prompt": [{"role": "user", "content": ")") + kQuestion +
                                          R"("}], "chosen": ")" + kChosen + R"(", "rejected": ")" + kRejected +
                                          "\"}\n");
  const double center = 0.05;
  auto r = cli("run " + recipe() + " output_dir=" + tmp / "run" + " data.train=" + tmp / "one.jsonl" +
               " train.steps=1 train.batch_size=2 train.micro_batch_size=2 reward.eval_fraction=0"
               " reward.center_coefficient=" +
               std::to_string(center));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const double reported = test::run_losses(tmp / "run").at(0);

  // The base as the trainer loads it: body from the cached preset, `score` drawn from the recipe seed (0).
  posttrain::LoadOptions load;
  load.classifier_labels = 1;
  load.head_seed = 0;
  auto model = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0", load);
  auto tok = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  const double rc = reward_alone(*model, pair_ids(tok, kQuestion, kChosen));
  const double rr = reward_alone(*model, pair_ids(tok, kQuestion, kRejected));
  const double expected = std::log1p(std::exp(-(rc - rr))) + center * (rc + rr) * (rc + rr);
  CHECK(reported == Approx(expected).epsilon(1e-5));
  CHECK(std::abs(rc - rr) > 1e-4);  // the two rows differ, so pooling the wrong token would show
}

TEST_CASE("a reward run generalises to held-out pairs and saves HF's classifier layout", "[trainers][reward]") {
  test::TempDir tmp("reward-run");
  auto r = cli("run " + recipe() + " output_dir=" + tmp / "run");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto losses = test::run_losses(tmp / "run");
  REQUIRE(losses.size() == 30);
  CHECK(losses.back() < 0.5 * losses.front());
  const auto held = test::last_metric_with(tmp / "run", "eval/accuracy");
  CHECK(held["eval/pairs"].get<int>() == 8);
  CHECK(held["eval/accuracy"].get<double>() >= 0.875);  // chance is 0.5

  const auto config = nlohmann::json::parse(test::read_text(tmp / "run/final/config.json"));
  CHECK(config["architectures"][0] == "Qwen3ForSequenceClassification");
  CHECK(config["id2label"].size() == 1);
  CHECK(config["pad_token_id"] == 151643);
  auto tensors = posttrain::read_safetensors(tmp / "run/final/model.safetensors");
  REQUIRE(tensors.count("score.weight") == 1);
  CHECK(tensors["score.weight"].sizes() == torch::IntArrayRef({1, 64}));
  CHECK(tensors.count("lm_head.weight") == 0);

  // posttrain score == the hand-pooled forward of the trained model, for a pair and a single response.
  test::write_text(tmp / "in.jsonl", std::string(R"({"prompt": [{"role": "user", "content": ")") + kQuestion +
                                         R"("}], "chosen": ")" + kChosen + R"(", "rejected": ")" + kRejected +
                                         "\"}\n\n" + R"({"prompt": [{"role": "user", "content": ")" + kQuestion +
                                         R"("}], "response": ")" + kRejected + "\"}\n");
  auto scored = cli("score --model " + tmp / "run/final" + " --input " + tmp / "in.jsonl");
  REQUIRE(scored.exit_code == 0);
  std::istringstream lines(scored.output);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  auto model = posttrain::load_model(tmp / "run/final");
  auto tok = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  const double rc = reward_alone(*model, pair_ids(tok, kQuestion, kChosen));
  const double rr = reward_alone(*model, pair_ids(tok, kQuestion, kRejected));
  const auto pair = nlohmann::json::parse(first), single = nlohmann::json::parse(second);
  CHECK(pair["line"] == 1);
  CHECK(pair["chosen"].get<double>() == Approx(rc).margin(1e-4));
  CHECK(pair["rejected"].get<double>() == Approx(rr).margin(1e-4));
  CHECK(single["line"] == 3);
  CHECK(single["score"].get<double>() == Approx(rr).margin(1e-4));
  CHECK(rc > rr);

  // The reward_model reward function (for PPO / GRPO) gives the same numbers on rollouts.
  {
    posttrain::Rollout chosen, rejected;
    const auto chosen_ids = pair_ids(tok, kQuestion, kChosen), rejected_ids = pair_ids(tok, kQuestion, kRejected);
    const auto prompt = posttrain::render_chat(tok, {{"user", kQuestion}}, true).ids;
    chosen.prompt_ids = rejected.prompt_ids = prompt;
    chosen.response_ids.assign(chosen_ids.begin() + static_cast<long>(prompt.size()), chosen_ids.end());
    rejected.response_ids.assign(rejected_ids.begin() + static_cast<long>(prompt.size()), rejected_ids.end());
    chosen.record = rejected.record = "{}";
    posttrain::RewardMix mix(YAML::Load("[{name: reward_model, model: '" + tmp / "run/final" + "'}]"), "ppo.rewards",
                             "recipe.yaml", {}, {});
    const auto scores = mix.score({chosen, rejected}, nullptr);
    CHECK(scores[0] == Approx(rc).margin(1e-4));
    CHECK(scores[1] == Approx(rr).margin(1e-4));
  }

  // Bad input names the line; a causal LM is refused.
  test::write_text(tmp / "bad.jsonl", R"({"prompt": "x", "response": "y"})"
                                      "\n"
                                      R"({"prompt": "x"})"
                                      "\n");
  auto bad = cli("score --model " + tmp / "run/final" + " --input " + tmp / "bad.jsonl");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("bad.jsonl:2: missing \"response\"") != std::string::npos);
  auto lm = cli("score --model " + test::test_cache_dir() + "/bases/tiny-seed0 --input " + tmp / "in.jsonl");
  CHECK(lm.exit_code == 2);
  CHECK(lm.output.find("not a reward model") != std::string::npos);
}

TEST_CASE("a reward run resumed from its step-10 checkpoint ends with the same weights", "[trainers][reward]") {
  test::TempDir tmp("reward-resume");
  auto r = test::rerun_from_checkpoint(tmp,
                                       "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() +
                                           " run " + recipe() + " train.steps=20 checkpoint.every=10",
                                       10);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
}

TEST_CASE("reward functions by hand, mixed with weights", "[trainers][reward]") {
  auto tok = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  auto rollout = [&](const std::string& answer, const std::string& response) {
    posttrain::Rollout r;
    r.record = nlohmann::json({{"prompt", "Q"}, {"answer", answer}}).dump();
    r.prompt_ids = tok.encode("Q");
    r.response_text = response;
    r.response_ids = tok.encode(response);
    return r;
  };
  const std::vector<posttrain::Rollout> rollouts = {rollout("42", " 42 "), rollout("42", "It is 42."),
                                                    rollout("7", "seven")};
  YAML::Node list = YAML::Load(
      "[{name: exact_match}, {name: contains, weight: 2}, {name: regex, pattern: '^It', weight: 0.5},"
      " {name: length_penalty, weight: 0.1, per_tokens: 2}]");
  posttrain::RewardMix mix(list, "grpo.rewards", "recipe.yaml", {}, {});
  std::vector<std::pair<std::string, double>> means;
  const auto total = mix.score(rollouts, &means);
  // " 42 ": exact 1, contains 1, regex 0, length -tokens/2.
  const double len0 = static_cast<double>(tok.encode(" 42 ").size()),
               len1 = static_cast<double>(tok.encode("It is 42.").size()),
               len2 = static_cast<double>(tok.encode("seven").size());
  CHECK(total[0] == Approx(1 + 2 * 1 + 0.5 * 0 - 0.1 * len0 / 2));
  CHECK(total[1] == Approx(0 + 2 * 1 + 0.5 * 1 - 0.1 * len1 / 2));
  CHECK(total[2] == Approx(0 + 0 + 0 - 0.1 * len2 / 2));
  REQUIRE(means.size() == 4);
  CHECK(means[0].first == "exact_match");
  CHECK(means[0].second == Approx(1.0 / 3));
  CHECK(means[1].second == Approx(2.0 / 3));
  // Unknown names and options are errors naming the entry.
  try {
    posttrain::RewardMix bad(YAML::Load("[{name: exact_match, feild: answer}]"), "grpo.rewards", "recipe.yaml", {}, {});
    FAIL("an unknown option was accepted");
  } catch (const posttrain::UserError& e) {
    CHECK(std::string(e.what()).find("grpo.rewards[0].feild") != std::string::npos);
  }
  CHECK_THROWS_AS(posttrain::RewardMix(YAML::Load("[{name: telepathy}]"), "grpo.rewards", "r.yaml", {}, {}),
                  posttrain::UserError);
}
