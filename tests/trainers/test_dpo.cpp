// DPO end to end: at step 1 the policy equals the reference, so every loss has a closed form
// (sigmoid: ln 2, ipo: (1 / (2 beta))^2, hinge: 1); a short run raises the reward margin; 2 ranks
// equal 1 rank; a bad loss name is an error naming the key.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <algorithm>
#include <cmath>

#include <filesystem>
#include <fstream>

#include "tests/test_util.h"

namespace {

test::CommandResult run(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string recipe() { return test::source_dir() + "/recipes/quickstart/dpo.yaml"; }

}  // namespace

TEST_CASE("DPO step-1 losses have their closed forms", "[trainers][dpo]") {
  test::TempDir tmp("dpo-step1");
  struct Case {
    std::string loss;
    double expected;
  };
  for (const Case& c :
       {Case{"sigmoid", std::log(2.0)}, Case{"cdpo", std::log(2.0)}, Case{"ipo", 25.0}, Case{"hinge", 1.0}}) {
    INFO(c.loss);
    auto r = run("run " + recipe() + " output_dir=" + tmp / c.loss + " train.steps=1 dpo.loss=" + c.loss +
                 " dpo.label_smoothing=" + (c.loss == "cdpo" ? "0.2" : "0"));
    REQUIRE(r.exit_code == 0);
    auto m = test::run_metrics(tmp / c.loss);
    CHECK(m[0]["loss"].get<double>() == Approx(c.expected).epsilon(1e-6));
    CHECK(m[0]["rewards/margins"].get<double>() == Approx(0.0).margin(1e-6));
  }
}

TEST_CASE("an option the DPO loss does not read is refused, not ignored", "[trainers][dpo]") {
  test::TempDir tmp("dpo-unused");
  const auto smoothing =
      run("run " + recipe() + " output_dir=" + tmp / "a" + " dpo.loss=simpo dpo.label_smoothing=0.1");
  CHECK(smoothing.exit_code == 2);
  CHECK(smoothing.output.find("dpo.label_smoothing is not used by dpo.loss simpo (it reads: beta gamma)") !=
        std::string::npos);
  const auto reference =
      run("run " + recipe() + " output_dir=" + tmp / "b" + " dpo.loss=orpo dpo.reference=precompute");
  CHECK(reference.exit_code == 2);
  CHECK(reference.output.find("dpo.reference is not used by dpo.loss orpo") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "a/final"));
}

TEST_CASE("a short DPO run raises the reward margin and preference accuracy", "[trainers][dpo]") {
  test::TempDir tmp("dpo-run");
  auto r = run("run " + recipe() + " output_dir=" + tmp / "run" + " train.steps=20");
  REQUIRE(r.exit_code == 0);
  auto m = test::run_metrics(tmp / "run");
  REQUIRE(m.size() == 20);
  CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>() - 0.03);
  CHECK(m.back()["rewards/margins"].get<double>() > 0.05);
  CHECK(m.back()["rewards/accuracy"].get<double>() > 0.6);
  // Reference-free losses train too.
  for (const char* loss : {"simpo", "orpo"}) {
    auto rf = run("run " + recipe() + " output_dir=" + tmp / loss + " train.steps=8 dpo.loss=" + loss);
    INFO(loss << ": " << rf.output);
    REQUIRE(rf.exit_code == 0);
    auto mm = test::run_metrics(tmp / loss);
    CHECK(mm.back()["loss"].get<double>() < mm.front()["loss"].get<double>());
  }
}

TEST_CASE("DPO on 2 ranks equals 1 rank", "[trainers][dpo][distributed]") {
  test::TempDir tmp("dpo-ranks");
  const std::string args = recipe() + " train.steps=3 checkpoint.every=0";
  REQUIRE(run("run " + args + " output_dir=" + tmp / "one").exit_code == 0);
  const int port = 20000 + static_cast<int>(::getpid()) % 20000;
  auto two = run("launch --nproc-per-node 2 --master-port " + std::to_string(port) + " " + args +
                 " output_dir=" + tmp / "two");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  auto a = test::run_metrics(tmp / "one"), b = test::run_metrics(tmp / "two");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-5));
    CHECK(b[i]["rewards/margins"].get<double>() == Approx(a[i]["rewards/margins"].get<double>()).margin(1e-6));
  }
}

TEST_CASE("DPO options are validated", "[trainers][dpo]") {
  test::TempDir tmp("dpo-bad");
  auto bad = run("run " + recipe() + " output_dir=" + tmp / "x" + " dpo.loss=kto2");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("dpo.loss \"kto2\" is not a registered preference loss") != std::string::npos);
  auto typo = run("run " + recipe() + " output_dir=" + tmp / "y" + " dpo.betta=0.2");
  CHECK(typo.exit_code == 2);
  CHECK(typo.output.find("dpo.betta: unknown key; did you mean \"beta\"?") != std::string::npos);
  // In a file, the message names the key's own line (not line 1 of the file).
  std::string text = test::read_text(recipe());
  text.replace(text.find("  beta: 0.1\n"), 12, "  beta: 0.1\n  betta: 0.2\n");
  const int line =
      1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(text.find("betta")), '\n'));
  test::write_text(tmp / "typo.yaml", text);
  auto in_file = run("run " + tmp / "typo.yaml" + " output_dir=" + tmp / "w" + " data.train=" + test::source_dir() +
                     "/recipes/data/dpo_demo.jsonl");
  INFO(in_file.output);
  CHECK(in_file.exit_code == 2);
  CHECK(in_file.output.find(tmp / "typo.yaml:" + std::to_string(line) + ": dpo.betta: unknown key") !=
        std::string::npos);
  test::write_text(tmp / "bad.jsonl", "{\"prompt\": \"x\", \"chosen\": \"y\"}\n");
  auto data = run("run " + recipe() + " output_dir=" + tmp / "z" + " data.train=" + tmp / "bad.jsonl");
  CHECK(data.exit_code == 2);
  CHECK(data.output.find(tmp / "bad.jsonl" + ":1: missing \"rejected\"") != std::string::npos);
}

TEST_CASE("DPO with precomputed reference log-probs equals DPO with the reference model", "[trainers][dpo]") {
  test::TempDir tmp("dpo-precompute");
  const std::string args = recipe() + " train.steps=4 checkpoint.every=0";
  REQUIRE(run("run " + args + " output_dir=" + tmp / "model").exit_code == 0);
  auto pre = run("run " + args + " output_dir=" + tmp / "pre dpo.reference=precompute");
  INFO(pre.output);
  REQUIRE(pre.exit_code == 0);
  auto a = test::run_metrics(tmp / "model"), b = test::run_metrics(tmp / "pre");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-5));
    CHECK(b[i]["rewards/margins"].get<double>() == Approx(a[i]["rewards/margins"].get<double>()).margin(1e-5));
  }
  auto manifest = nlohmann::json::parse(test::read_text(tmp / "pre/manifest.json"));
  CHECK(test::fs::exists(manifest["reference_logprobs"].get<std::string>()));
}

TEST_CASE("a DPO run resumed from its step-10 checkpoint ends with the same weights", "[trainers][dpo]") {
  test::TempDir tmp("dpo-resume");
  auto r = test::rerun_from_checkpoint(tmp,
                                       "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() +
                                           " run " + recipe() + " train.steps=20 checkpoint.every=10",
                                       10);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
}
