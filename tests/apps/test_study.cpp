// The main study end to end on small budgets (scripts/testbed-study.sh --tiny): the testbed's data
// and trimmed tokenizer, a base pre-trained with that vocabulary, seven post-training variants at two
// seeds each with their eval hooks, the control checks (seed by seed, and replicates), the report
// with its replicate statistics, and best-of-n against the matrix's reward model.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

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
  std::set<std::string> checks;
  for (const auto& c : controls["checks"]) checks.insert(c["check"].get<std::string>());
  for (const char* check : {"seed 0: same base", "seed 1: configs differ only in the method section",
                            "replicates of ppo differ only in the seed"})
    CHECK(checks.count(check) == 1);
  const std::string report = test::read_text(tmp / "study/variants/report.md");
  for (const char* variant : {"sft", "dpo", "reward", "ppo", "grpo", "constitutional", "constitutional-rl"})
    for (const int seed : {0, 1}) {
      const std::string run = std::string(variant) + "/seed-" + std::to_string(seed);
      INFO(run);
      const auto manifest = nlohmann::json::parse(test::read_text(tmp / ("study/variants/" + run + "/manifest.json")));
      CHECK(manifest["status"] == "completed");
      CHECK(manifest["seed"] == seed);
      CHECK(report.find(run) != std::string::npos);
    }
  // PPO's reward model is the same seed's (${seed} in the matrix).
  CHECK(test::read_text(tmp / "study/variants/ppo/seed-1/recipe.resolved.yaml").find("reward/seed-1/final") !=
        std::string::npos);
  // Replicate statistics: every pair of the six variants that generate, on each of the 3 suites.
  const auto stats = nlohmann::json::parse(test::read_text(tmp / "study/variants/report.json"))["replicates"];
  CHECK(stats["comparisons"].size() == 15 * 3);
  for (const auto& c : stats["comparisons"]) {
    CHECK(c["seeds"] == 2);
    CHECK(c["p_holm"].get<double>() >= c["p"].get<double>());
  }
  CHECK(report.find("## Replicates and method differences") != std::string::npos);
  for (const char* suite : {"gold", "refusal", "sycophancy"}) {
    CHECK(report.find(suite) != std::string::npos);
    CHECK(std::filesystem::exists(tmp / (std::string("study/base-evals/evals/") + suite + ".json")));
  }

  // The refusal suite's two errors appear in the report beside its primary (balanced) score.
  const auto refusal = nlohmann::json::parse(test::read_text(tmp / "study/variants/sft/seed-0/evals/refusal.json"));
  const size_t refusal_table = report.find("### refusal", report.find("## Other scores"));
  REQUIRE(refusal_table != std::string::npos);
  const size_t sft_row = report.find("| sft/seed-0 |", refusal_table);
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
  CHECK(redteam["runs"].size() == 7);  // the base and the 6 variants that generate (first seeds; not the reward model)
  CHECK(report.find("Red team") != std::string::npos);
  CHECK(report.find("Transfer") != std::string::npos);
  // The version the red team attacked is the version the variants' evals scored.
  const auto sft_gold = nlohmann::json::parse(test::read_text(tmp / "study/variants/sft/seed-0/evals/gold.json"));
  bool matched = false;
  for (const auto& run : redteam["runs"])
    for (const auto& suite : run["suites"])
      if (run["policy"] == "sft/seed-0" && suite["suite"] == "gold") matched = suite["version"] == sft_gold["version"];
  CHECK(matched);
  CHECK(test::last_metric_with(tmp / "study/variants/ppo/seed-0", "reward/gold")["reward/gold"].is_number());
  CHECK(test::last_metric_with(tmp / "study/variants/grpo/seed-1", "reward/gold")["reward/reward_model"].is_number());

  const auto bon = nlohmann::json::parse(test::read_text(tmp / "study/base-evals/evals/best_of_n.json"));
  const auto& curve = bon["details"]["curve"];
  REQUIRE(curve.size() == 3);  // n = 1, 2, 4
  CHECK(curve[0]["kl"].get<double>() == 0.0);
  CHECK(curve[2]["kl"].get<double>() == Approx(std::log(4.0) - 0.75));
  // Best-of-n never lowers the proxy score it selects by.
  CHECK(curve[2]["proxy"].get<double>() >= curve[0]["proxy"].get<double>() - 1e-9);
}
