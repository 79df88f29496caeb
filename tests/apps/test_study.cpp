// The main study end to end on small budgets (scripts/testbed-study.sh --tiny): the testbed's data
// and trimmed tokenizer, a base pre-trained with that vocabulary, seven post-training variants with
// their eval hooks, the control checks, the report, and best-of-n against the matrix's reward model.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "tests/test_util.h"

TEST_CASE("the tiny testbed study runs every method, passes its controls and reports them all", "[apps][study]") {
  test::TempDir tmp("study");
  auto r = test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " POSTTRAIN=" + test::posttrain_bin() + " bash " +
                     test::source_dir() + "/scripts/testbed-study.sh --tiny --out " + tmp / "study");
  INFO(r.output.substr(r.output.size() > 6000 ? r.output.size() - 6000 : 0));
  REQUIRE(r.exit_code == 0);

  // The base has the trimmed vocabulary (1,049 tokens, rounded up to a multiple of 64).
  const auto config = nlohmann::json::parse(test::read_text(tmp / "study/base/final/config.json"));
  CHECK(config["vocab_size"].get<int64_t>() < 2000);

  const auto controls = nlohmann::json::parse(test::read_text(tmp / "study/variants/controls.json"));
  CHECK(controls["controlled"].get<bool>());
  const std::string report = test::read_text(tmp / "study/variants/report.md");
  for (const char* variant : {"sft", "dpo", "reward", "ppo", "grpo", "constitutional", "constitutional-rl"}) {
    INFO(variant);
    const auto manifest =
        nlohmann::json::parse(test::read_text(tmp / (std::string("study/variants/") + variant + "/manifest.json")));
    CHECK(manifest["status"] == "completed");
    CHECK(report.find(variant) != std::string::npos);
  }
  for (const char* suite : {"gold", "refusal", "sycophancy"}) {
    CHECK(report.find(suite) != std::string::npos);
    CHECK(std::filesystem::exists(tmp / (std::string("study/base-evals/evals/") + suite + ".json")));
  }

  // The refusal suite's two errors appear in the report beside its primary (balanced) score.
  const auto refusal = nlohmann::json::parse(test::read_text(tmp / "study/variants/sft/evals/refusal.json"));
  const size_t refusal_table = report.find("### refusal", report.find("## Other scores"));
  REQUIRE(refusal_table != std::string::npos);
  const size_t sft_row = report.find("| sft |", refusal_table);
  REQUIRE(sft_row != std::string::npos);
  const std::string row = report.substr(sft_row, report.find('\n', sft_row) - sft_row);
  for (const char* error : {"harmful_compliance", "over_refusal"}) {
    char value[32];
    std::snprintf(value, sizeof(value), "%.3f", refusal["scores"][error]["value"].get<double>());
    INFO(error << " = " << value << " in " << row);
    CHECK(row.find(value) != std::string::npos);
  }

  // RL variants tracked gold beside the proxy they optimised.
  // The red team ran on the base and every variant, and the report shows it.
  const auto redteam = nlohmann::json::parse(test::read_text(tmp / "study/variants/redteam/redteam.json"));
  CHECK(redteam["runs"].size() == 7);  // the base and the 6 variants that generate (not the reward model)
  CHECK(report.find("Red team") != std::string::npos);
  CHECK(report.find("Transfer") != std::string::npos);
  // The version the red team attacked is the version the variants' evals scored.
  const auto sft_gold = nlohmann::json::parse(test::read_text(tmp / "study/variants/sft/evals/gold.json"));
  bool matched = false;
  for (const auto& run : redteam["runs"])
    for (const auto& suite : run["suites"])
      if (run["policy"] == "sft" && suite["suite"] == "gold") matched = suite["version"] == sft_gold["version"];
  CHECK(matched);
  CHECK(test::last_metric_with(tmp / "study/variants/ppo", "reward/gold")["reward/gold"].is_number());
  CHECK(test::last_metric_with(tmp / "study/variants/grpo", "reward/gold")["reward/reward_model"].is_number());

  const auto bon = nlohmann::json::parse(test::read_text(tmp / "study/base-evals/evals/best_of_n.json"));
  const auto& curve = bon["details"]["curve"];
  REQUIRE(curve.size() == 3);  // n = 1, 2, 4
  CHECK(curve[0]["kl"].get<double>() == 0.0);
  CHECK(curve[2]["kl"].get<double>() == Approx(std::log(4.0) - 0.75));
  // Best-of-n never lowers the proxy score it selects by.
  CHECK(curve[2]["proxy"].get<double>() >= curve[0]["proxy"].get<double>() - 1e-9);
}
