// GRPO on the bandit (tests/test_util.h bandit_base): the mean reward rises while the KL to the
// reference stays bounded, a large KL coefficient keeps the policy near the reference, every
// estimator trains, 2 ranks equal 1 rank, and a resumed run ends with the same weights.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <numeric>

#include "tests/test_util.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string grpo_args(const std::string& out, const std::string& extra = "") {
  return "run " + test::source_dir() + "/recipes/quickstart/grpo.yaml base=" + test::bandit_base() +
         " output_dir=" + out + " " + extra;
}

double mean_of(const std::vector<nlohmann::json>& m, const std::string& key, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += m[i][key].get<double>();
  return sum / static_cast<double>(to - from);
}

}  // namespace

TEST_CASE("GRPO raises the bandit reward with a bounded KL, and a large KL coefficient holds it back",
          "[trainers][grpo]") {
  test::TempDir tmp("grpo-bandit");
  auto r = cli(grpo_args(tmp / "free"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto m = test::run_metrics(tmp / "free");
  REQUIRE(m.size() == 20);
  const double start = mean_of(m, "reward/mean", 0, 4), end = mean_of(m, "reward/mean", 16, 20);
  CHECK(start < 0.7);  // the SFT'd policy picks an "e" word about half the time
  CHECK(end > start + 0.2);
  CHECK(mean_of(m, "kl", 16, 20) < 5.0);
  for (const char* key : {"entropy", "clip_fraction", "response_length", "time/generate_s", "reward/regex"})
    CHECK(m.back().contains(key));

  auto held = cli(grpo_args(tmp / "held", "grpo.kl_coef=1.0"));
  REQUIRE(held.exit_code == 0);
  auto h = test::run_metrics(tmp / "held");
  CHECK(mean_of(h, "kl", 16, 20) < 0.5 * mean_of(m, "kl", 16, 20));
}

TEST_CASE("GRPO's other estimators train too (rloo, reinforce++)", "[trainers][grpo]") {
  test::TempDir tmp("grpo-estimators");
  for (const char* estimator : {"rloo", "reinforce++"}) {
    INFO(estimator);
    auto r = cli(grpo_args(tmp / estimator, std::string("grpo.estimator=") + estimator));
    REQUIRE(r.exit_code == 0);
    auto m = test::run_metrics(tmp / estimator);
    CHECK(mean_of(m, "reward/mean", 16, 20) > mean_of(m, "reward/mean", 0, 4) + 0.15);
  }
}

TEST_CASE("with the KL in the reward, kl_estimator decides the penalty the rewards pay", "[trainers][grpo]") {
  test::TempDir tmp("grpo-kl-reward");
  // reinforce++ puts the KL in the reward. At step 1 policy = reference (no penalty either way); from
  // step 2 the penalties differ (k1 and k3 of the same log-probs), so the rewards the estimator saw do.
  std::map<std::string, std::vector<nlohmann::json>> runs;
  for (const char* estimator : {"k1", "k3"}) {
    auto r = cli(grpo_args(tmp / estimator, std::string("train.steps=3 grpo.estimator=reinforce++ grpo.kl_coef=1 "
                                                        "grpo.kl_estimator=") +
                                                estimator));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    runs[estimator] = test::run_metrics(tmp / estimator);
  }
  CHECK(runs["k1"][0]["reward/std"] == runs["k3"][0]["reward/std"]);
  CHECK(runs["k1"][2]["kl"].get<double>() > 0);
  CHECK(runs["k1"][2]["reward/std"].get<double>() != runs["k3"][2]["reward/std"].get<double>());
}

TEST_CASE("GRPO on 2 ranks equals 1 rank", "[trainers][grpo][distributed]") {
  test::TempDir tmp("grpo-ranks");
  // Rollouts are generated 2 prompts per call on both (the calls then hold the same prompts).
  const std::string extra = "train.steps=3 checkpoint.every=0 grpo.generation_batch=2";
  REQUIRE(cli(grpo_args(tmp / "one", extra)).exit_code == 0);
  const int port = 21000 + static_cast<int>(::getpid()) % 19000;
  auto two = cli("launch --nproc-per-node 2 --master-port " + std::to_string(port) + " " + test::source_dir() +
                 "/recipes/quickstart/grpo.yaml base=" + test::bandit_base() + " output_dir=" + tmp / "two" +
                 " train.micro_batch_size=2 " + extra);
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  // 1 rank: one micro-batch of 4 prompts; 2 ranks: 2 prompts each. Rollouts depend on neither.
  const auto one_losses = test::run_losses(tmp / "one"), two_losses = test::run_losses(tmp / "two");
  const auto one_m = test::run_metrics(tmp / "one"), two_m = test::run_metrics(tmp / "two");
  REQUIRE(one_losses.size() == 3);
  REQUIRE(two_losses.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(two_losses[i] == Approx(one_losses[i]).margin(1e-5));
    CHECK(two_m[i]["reward/mean"].get<double>() == Approx(one_m[i]["reward/mean"].get<double>()));
  }
}

TEST_CASE("a GRPO run resumed from its step-10 checkpoint ends with the same weights", "[trainers][grpo]") {
  test::TempDir tmp("grpo-resume");
  auto r =
      test::rerun_from_checkpoint(tmp,
                                  "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " +
                                      test::source_dir() + "/recipes/quickstart/grpo.yaml base=" + test::bandit_base(),
                                  10);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
}

TEST_CASE("a generation_batch that would straddle two ranks is refused naming the key", "[trainers][grpo]") {
  test::TempDir tmp("grpo-genbatch");
  auto r = cli(grpo_args(tmp / "x", "grpo.generation_batch=3"));
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("grpo.generation_batch (3) must divide each rank's 4 prompts") != std::string::npos);
}

TEST_CASE("the RL quickstart recipes run from any working directory", "[trainers][grpo][ppo][paths]") {
  // A copy of recipes/ (the recipes name ../data and ../../runs relative to themselves), run from an
  // unrelated folder: SFT writes the base where GRPO and PPO look for it, and nothing lands in the
  // working directory.
  test::TempDir tmp("quickstart-cwd");
  test::fs::create_directories(tmp / "repo/recipes");
  for (const char* folder : {"quickstart", "data"})
    test::fs::copy(test::source_dir() + "/recipes/" + folder, tmp / (std::string("repo/recipes/") + folder),
                   test::fs::copy_options::recursive);
  test::fs::create_directories(tmp / "elsewhere");
  auto run_from_elsewhere = [&](const std::string& recipe, const std::string& overrides) {
    return test::run("cd " + tmp / "elsewhere" + " && POSTTRAIN_CACHE=" + test::test_cache_dir() + " " +
                     test::posttrain_bin() + " run ../repo/recipes/quickstart/" + recipe + " " + overrides);
  };
  auto r = run_from_elsewhere("bandit_sft.yaml", "train.steps=2 train.warmup_steps=0");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(test::fs::exists(tmp / "repo/runs/quickstart-bandit-sft/final/config.json"));
  r = run_from_elsewhere("grpo.yaml", "train.steps=1 checkpoint.every=0 grpo.group_size=2");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(test::fs::exists(tmp / "repo/runs/quickstart-grpo/final/config.json"));
  r = run_from_elsewhere("ppo.yaml", "train.steps=1 checkpoint.every=0 train.batch_size=4 train.micro_batch_size=2");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(test::fs::exists(tmp / "repo/runs/quickstart-ppo/final/config.json"));
  CHECK(test::fs::is_empty(tmp / "elsewhere"));
}
