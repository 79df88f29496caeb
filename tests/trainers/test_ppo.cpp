// PPO on the bandit (tests/test_util.h bandit_base): the mean reward rises while the KL to the
// reference stays bounded, a large KL coefficient keeps the policy near the reference, the critic
// learns (value loss falls), 2 ranks equal 1 rank, and a resumed run ends with the same weights.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/test_util.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string recipe_args(const std::string& out, const std::string& extra = "") {
  return test::source_dir() + "/recipes/quickstart/ppo.yaml base=" + test::bandit_base() +
         (out.empty() ? "" : " output_dir=" + out) + " " + extra;
}

double mean_of(const std::vector<nlohmann::json>& m, const std::string& key, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += m[i][key].get<double>();
  return sum / static_cast<double>(to - from);
}

}  // namespace

TEST_CASE("PPO raises the bandit reward with a bounded KL, and a large KL coefficient holds it back",
          "[trainers][ppo]") {
  test::TempDir tmp("ppo-bandit");
  auto r = cli("run " + recipe_args(tmp / "free", "train.steps=12"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto m = test::run_metrics(tmp / "free");
  REQUIRE(m.size() == 12);
  // Step 1's rollouts are the base's own: headroom to learn (PPO moves within a step or two).
  const double start = mean_of(m, "reward/mean", 0, 1), end = mean_of(m, "reward/mean", 9, 12);
  CHECK(start < 0.7);
  CHECK(end > start + 0.2);
  CHECK(mean_of(m, "kl", 9, 12) < 5.0);
  CHECK(mean_of(m, "value_loss", 9, 12) < mean_of(m, "value_loss", 0, 3));
  for (const char* key : {"entropy", "clip_fraction", "approx_kl", "value_loss", "response_length", "kl_coef",
                          "reward/std", "time/generate_s", "time/score_s", "time/update_s"})
    CHECK(m.back().contains(key));
  CHECK(std::filesystem::exists(tmp / "free/critic/checkpoints/step-000012/model.safetensors"));

  auto held = cli("run " + recipe_args(tmp / "held", "train.steps=12 ppo.kl_coef=1.0"));
  REQUIRE(held.exit_code == 0);
  auto h = test::run_metrics(tmp / "held");
  CHECK(mean_of(h, "kl", 9, 12) < 0.5 * mean_of(m, "kl", 9, 12));

  // Adaptive KL: above target the coefficient grows.
  auto adaptive = cli("run " + recipe_args(tmp / "adaptive", "train.steps=6 ppo.kl_target=0.01 ppo.kl_horizon=100"));
  REQUIRE(adaptive.exit_code == 0);
  auto a = test::run_metrics(tmp / "adaptive");
  CHECK(a.back()["kl_coef"].get<double>() > a.front()["kl_coef"].get<double>());
}

TEST_CASE("PPO on 2 ranks equals 1 rank", "[trainers][ppo][distributed]") {
  test::TempDir tmp("ppo-ranks");
  // 2 steps of 2 epochs x 1 minibatch: 4 updates of policy and critic on the same rollouts. Rollouts
  // are generated 4 prompts per call on both, so both generate the same calls.
  const std::string extra =
      "train.steps=2 checkpoint.every=0 ppo.minibatches=1 train.micro_batch_size=4 ppo.generation_batch=4";
  REQUIRE(cli("run " + recipe_args(tmp / "one", extra)).exit_code == 0);
  const int port = 21000 + static_cast<int>(::getpid()) % 19000;
  auto two =
      cli("launch --nproc-per-node 2 --master-port " + std::to_string(port) + " " + recipe_args(tmp / "two", extra));
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  const auto one_m = test::run_metrics(tmp / "one"), two_m = test::run_metrics(tmp / "two");
  REQUIRE(one_m.size() == 2);
  REQUIRE(two_m.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    for (const char* key : {"loss", "value_loss", "reward/mean", "kl"})
      CHECK(two_m[i][key].get<double>() == Approx(one_m[i][key].get<double>()).margin(1e-5));
  }
}

TEST_CASE("a PPO run resumed from its step-4 checkpoint ends with the same weights", "[trainers][ppo]") {
  test::TempDir tmp("ppo-resume");
  // The adaptive KL coefficient and the critic resume too.
  auto r = test::rerun_from_checkpoint(
      tmp,
      "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " +
          recipe_args("", "train.steps=8 checkpoint.every=4 checkpoint.keep_last=5 ppo.kl_target=0.5"),
      4, {"critic/checkpoints"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
  CHECK(test::read_text(tmp / "resumed/critic/checkpoints/step-000008/model.safetensors") ==
        test::read_text(tmp / "full/critic/checkpoints/step-000008/model.safetensors"));
}

TEST_CASE("PPO with a shared-body critic learns, and resumes to the same weights", "[trainers][ppo]") {
  test::TempDir tmp("ppo-shared");
  auto r = test::rerun_from_checkpoint(
      tmp,
      "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " +
          recipe_args("", "train.steps=10 checkpoint.every=5 checkpoint.keep_last=5 ppo.critic=shared"),
      5, {"critic/checkpoints"});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto m = test::run_metrics(tmp / "full");
  REQUIRE(m.size() == 10);
  CHECK(mean_of(m, "reward/mean", 7, 10) > mean_of(m, "reward/mean", 0, 3) + 0.15);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
  CHECK(test::read_text(tmp / "resumed/critic/checkpoints/step-000010/value_head.safetensors") ==
        test::read_text(tmp / "full/critic/checkpoints/step-000010/value_head.safetensors"));
}
