// KTO end to end: at step 1 the policy equals the reference, so r = 0 and z = 0 and each example's
// loss is lambda (1 - sigmoid(0)) = lambda / 2; a short run separates the implicit rewards of
// desirable and undesirable responses; unpaired records are checked by file:line.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string recipe() { return test::source_dir() + "/recipes/quickstart/kto.yaml"; }

}  // namespace

TEST_CASE("KTO step-1 loss is the weighted mean of lambda / 2, with z = 0", "[trainers][kto]") {
  test::TempDir tmp("kto-step1");
  // One desirable and one undesirable example (unpaired format); batch 2 holds both.
  test::write_text(tmp / "d.jsonl", R"({"prompt": "Q: 2+2?", "completion": " 4", "label": true})"
                                    "\n"
                                    R"({"prompt": "Q: 2+2?", "completion": " 5", "label": false})"
                                    "\n");
  auto r = cli("run " + recipe() + " output_dir=" + tmp / "run" + " data.train=" + tmp / "d.jsonl" +
               " train.steps=1 train.batch_size=2 train.micro_batch_size=1 kto.desirable_weight=2.0");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto m = test::run_metrics(tmp / "run").at(0);
  // (2 x 0.5 + 1 x 0.5) / 2 examples = 0.75.
  CHECK(m["loss"].get<double>() == Approx(0.75).epsilon(1e-6));
  CHECK(m["kl"].get<double>() == Approx(0.0).margin(1e-6));
  CHECK(m["rewards/margins"].get<double>() == Approx(0.0).margin(1e-6));
}

TEST_CASE("a short KTO run separates desirable from undesirable responses", "[trainers][kto]") {
  test::TempDir tmp("kto-run");
  auto r = cli("run " + recipe() + " output_dir=" + tmp / "run" + " train.steps=15");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto m = test::run_metrics(tmp / "run");
  REQUIRE(m.size() == 15);
  CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>() - 0.01);
  CHECK(m.back()["rewards/margins"].get<double>() > 0.05);
}

TEST_CASE("unpaired records are validated by file and line", "[trainers][kto]") {
  test::TempDir tmp("kto-bad");
  test::write_text(tmp / "bad.jsonl", R"({"prompt": "Q", "completion": "A", "label": true})"
                                      "\n"
                                      R"({"prompt": "Q", "completion": "A", "label": "yes"})"
                                      "\n");
  auto r = cli("run " + recipe() + " output_dir=" + tmp / "run" + " data.train=" + tmp / "bad.jsonl");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("bad.jsonl:2: \"label\" must be true (desirable) or false (undesirable)") != std::string::npos);
}

TEST_CASE("a KTO run resumed from its step-5 checkpoint ends with the same weights", "[trainers][kto]") {
  test::TempDir tmp("kto-resume");
  auto r = test::rerun_from_checkpoint(tmp,
                                       "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() +
                                           " run " + recipe() + " train.steps=10 checkpoint.every=5",
                                       5);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "resumed/final/model.safetensors") ==
        test::read_text(tmp / "full/final/model.safetensors"));
}
