// Eval hooks end to end on the tiny base: continuation log-likelihoods against a second
// implementation (per-token log-probs of the whole sequence), a recipe whose evals run every K steps
// and after the run, 2 ranks == 1 rank, posttrain eval == the after_run hook, and the real datasets.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "eval_hooks/comparisons.h"
#include "eval_hooks/eval_model.h"
#include "launch/distributed.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "tests/test_util.h"

using namespace posttrain;
namespace fs = std::filesystem;

namespace {

test::CommandResult run(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string recipe() { return test::source_dir() + "/recipes/quickstart/sft_evals.yaml"; }

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_text(path)); }

// The file's sha256 from coreutils, not from our own hashing.
std::string sha256sum(const std::string& path) { return test::run("sha256sum " + path).output.substr(0, 64); }

}  // namespace

TEST_CASE("continuation log-likelihoods equal the sum of per-token log-probs", "[evals][model]") {
  test::TempDir tmp("eval-model");
  REQUIRE(test::run(test::posttrain_bin() + " init-base --preset tiny --seed 5 --out " + tmp / "base").exit_code == 0);
  auto model = load_model(tmp / "base");
  auto dist = make_single_process();
  EvalModel eval(*model, Tokenizer::from_dir(tmp / "base"), dist.get(), /*chunk_size=*/2);
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"Question: What is the capital of France?\nAnswer:", " Paris"},
      {"The sky is", " blue today, mostly."},
      {"x", "y"},  // may merge into one token: then the continuation takes the merged token
      {"", "Hello world"}};
  std::vector<ScoringRequest> requests;
  for (const auto& [context, continuation] : pairs) {
    const ScoringRequest r = eval.text_request(context, continuation);
    std::vector<int32_t> joined(r.context);
    joined.insert(joined.end(), r.continuation.begin(), r.continuation.end());
    const auto whole = eval.tokenizer().encode(context + continuation);
    // Tokenized together and split at the boundary; a context that merged whole into the
    // continuation leaves <|endoftext|> as the start.
    if (r.context == std::vector<int32_t>{eval.tokenizer().pad_id()}) joined.erase(joined.begin());
    CHECK(joined == whole);
    CHECK_FALSE(r.continuation.empty());
    requests.push_back(r);
  }
  const auto sums = eval.loglikelihoods(requests);  // batched, padded, two per chunk
  for (size_t i = 0; i < requests.size(); ++i) {
    std::vector<int64_t> ids(requests[i].context.begin(), requests[i].context.end());
    ids.insert(ids.end(), requests[i].continuation.begin(), requests[i].continuation.end());
    const auto per_token = sequence_logprobs(*model, ids);  // one row, no padding: the oracle
    double expected = 0;
    for (size_t t = requests[i].context.size() - 1; t < per_token.size(); ++t) expected += per_token[t];
    CHECK(sums[i] == Approx(expected).margin(1e-4));
  }
}

TEST_CASE("a recipe's evals run every K steps and after the run, into the run directory", "[evals][hooks]") {
  test::TempDir tmp("eval-hooks");
  auto r = run("run " + recipe() + " output_dir=" + tmp / "run" +
               " train.steps=4 checkpoint.every=3 evals.0.every_n_steps=2 evals.0.on_checkpoint=true"
               " evals.1.limit=12 evals.3.limit=6 evals.3.max_new_tokens=8");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string evals = tmp / "run/evals";
  // mc: at step 2 (every 2), 3 (checkpoint) and after the run (step 4 is the after_run one).
  for (const char* f : {"step-000002/mc.json", "step-000003/mc.json", "mc.json", "mc.h5", "arith_sums.json",
                        "preference.json", "refusal.json", "refusal.h5", "sycophancy.json"})
    CHECK(fs::exists(evals + "/" + f));
  CHECK_FALSE(fs::exists(evals + "/step-000004"));
  const auto mc = read_json(evals + "/mc.json");
  CHECK(mc["step"] == 4);
  CHECK(mc["items"] == 24);
  CHECK(mc["primary"] == "acc");
  CHECK(mc["data_sha256"] == sha256sum(test::source_dir() + "/recipes/evals/arith_mc.jsonl"));
  const double acc = mc["scores"]["acc"]["value"].get<double>();
  CHECK(mc["scores"]["acc"]["ci95"][0].get<double>() <= acc);
  CHECK(mc["scores"]["acc"]["ci95"][1].get<double>() >= acc);
  CHECK(mc["robustness"]["perturbations"].size() == 11);
  CHECK(mc["robustness"].contains("position_bias_rstd"));
  CHECK(mc["audit"].contains("gameable"));
  CHECK(mc["contamination"]["ngram"] == 13);
  // The summary is in metrics.jsonl at each step it ran.
  std::vector<int> steps;
  for (const auto& m : test::run_metrics(tmp / "run"))
    if (m.contains("eval/mc/acc")) steps.push_back(m["step"].get<int>());
  CHECK(steps == std::vector<int>{2, 3, 4});
  CHECK(read_json(evals + "/arith_sums.json")["items"] == 12);
  const auto refusal = read_json(evals + "/refusal.json");
  CHECK(refusal["items"] == 6);
  CHECK(refusal["scores"].contains("harmful_compliance"));
  CHECK(refusal["scores"].contains("over_refusal"));
  CHECK(read_json(evals + "/sycophancy.json")["details"]["controls"]["flipped_view_items"] == 8);
  // Each summary's per-item scores (what replicates pair between runs) give its primary score,
  // the refusal suite's class-balanced one included.
  for (const char* suite : {"mc", "arith_sums", "preference", "refusal", "sycophancy"}) {
    const auto summary = read_json(evals + "/" + suite + ".json");
    INFO(suite);
    REQUIRE(summary.contains("item_scores"));
    posttrain::ItemScores items;
    items.ids = summary["item_scores"]["ids"].get<std::vector<std::string>>();
    items.scores = summary["item_scores"]["scores"].get<std::vector<double>>();
    items.groups = summary["item_scores"]["groups"].get<std::vector<int>>();
    CHECK(items.ids.size() == summary["items"].get<size_t>());
    const std::string primary = summary["primary"].get<std::string>();
    CHECK(posttrain::primary_score(items) == Approx(summary["scores"][primary]["value"].get<double>()).margin(1e-12));
  }

  // posttrain eval on the saved final model gives the after_run numbers.
  auto standalone = run("eval --model " + tmp / "run/final" + " --suite mc --option data=" + test::source_dir() +
                        "/recipes/evals/arith_mc.jsonl --out " + tmp / "standalone");
  INFO(standalone.output);
  REQUIRE(standalone.exit_code == 0);
  const auto again = read_json(tmp / "standalone/evals/mc.json");
  for (const char* score : {"acc", "acc_norm", "mc2"})
    CHECK(again["scores"][score]["value"].get<double>() ==
          Approx(mc["scores"][score]["value"].get<double>()).margin(1e-9));
  CHECK(again["robustness"]["worst"] == mc["robustness"]["worst"]);
}

TEST_CASE("eval hooks on 2 ranks give the scores of 1 rank", "[evals][hooks][distributed]") {
  test::TempDir tmp("eval-ranks");
  const std::string args = recipe() +
                           " train.steps=2 checkpoint.every=0 evals.1.limit=8 evals.3.limit=6 evals.3.max_new_tokens=8"
                           " evals.0.limit=9";  // 9 items: the ranks' chunks differ in size
  auto one = run("run " + args + " output_dir=" + tmp / "one");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  const int port = 20000 + static_cast<int>(::getpid()) % 20000;
  auto two = run("launch --nproc-per-node 2 --master-port " + std::to_string(port) + " " + args +
                 " output_dir=" + tmp / "two");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  for (const char* suite : {"mc", "arith_sums", "preference", "refusal", "sycophancy"}) {
    INFO(suite);
    const auto a = read_json(tmp / ("one/evals/" + std::string(suite) + ".json"));
    const auto b = read_json(tmp / ("two/evals/" + std::string(suite) + ".json"));
    CHECK(b["world_size"] == 2);
    CHECK(a["items"] == b["items"]);
    for (const auto& [name, score] : a["scores"].items())
      CHECK(b["scores"][name]["value"].get<double>() == Approx(score["value"].get<double>()).margin(1e-6));
    CHECK(a["robustness"]["consistency"] == b["robustness"]["consistency"]);
  }
}

TEST_CASE("a policy-as-judge refusal classifier audits itself on answers of known behaviour", "[evals][hooks]") {
  test::TempDir tmp("eval-judge");
  REQUIRE(test::run(test::posttrain_bin() + " init-base --preset tiny --seed 2 --out " + tmp / "base").exit_code == 0);
  auto r = run("eval --model " + tmp / "base" + " --suite refusal --option data=" + test::source_dir() +
               "/recipes/evals/refusal_demo.jsonl --option classifier=policy_judge --option limit=6"
               " --option max_new_tokens=4 --option perturbations=[] --out " +
               tmp / "out");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto summary = read_json(tmp / "out/evals/refusal.json");
  const auto& audit = summary["audit"];
  CHECK(audit["classifier"] == "policy_judge");
  REQUIRE(audit["policies"].size() == 6);
  for (const auto& p : audit["policies"]) {
    const double error = p["details"]["classifier_error"].get<double>();
    CHECK(error >= 0.0);
    CHECK(error <= 1.0);
  }
  CHECK(summary["details"]["classifier"] == "policy_judge");
  CHECK(summary["robustness"]["perturbations"].size() == 1);
}

TEST_CASE("bad evals entries stop the run before training", "[evals][hooks]") {
  test::TempDir tmp("eval-bad");
  auto r = run("run " + recipe() + " output_dir=" + tmp / "run" + " evals.0.suite=truthfulqa");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("evals[0].suite: unknown eval suite \"truthfulqa\"") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "run/metrics.jsonl"));
  r = run("run " + recipe() + " output_dir=" + tmp / "run2" + " evals.0.limt=3");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("evals[0].limt: unknown key; did you mean \"limit\"?") != std::string::npos);
  // In a file, the message names the key's own line.
  test::write_text(tmp / "evals.yaml", "defaults: [" + test::source_dir() +
                                           "/recipes/quickstart/sft.yaml]\nevals:\n  - suite: mc\n    data: " +
                                           test::source_dir() + "/recipes/evals/arith_mc.jsonl\n    limt: 3\n");
  r = run("run " + tmp / "evals.yaml" + " output_dir=" + tmp / "run3 data.train=" + test::source_dir() +
          "/recipes/data/sft_demo_chat.jsonl");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find(tmp / "evals.yaml:5: evals[0].limt: unknown key") != std::string::npos);
  r = run("eval --model " + tmp / "none" + " --suite mc --option data=" + tmp / "missing.jsonl");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("missing.jsonl: data file not found") != std::string::npos);
}

TEST_CASE("TruthfulQA and XSTest run end to end on the tiny base", "[evals][shared]") {
  const std::string shared = test::shared_dir() + "/datasets";
  if (!fs::exists(shared + "/xstest/xstest_prompts.csv")) {
    WARN("skipped: ../shared/datasets is not present (a fresh clone has none)");
    return;
  }
  test::TempDir tmp("eval-real");
  REQUIRE(test::run(test::posttrain_bin() + " init-base --preset tiny --seed 0 --out " + tmp / "base").exit_code == 0);
  const std::string tqa_data = " --option data=" + shared + "/truthfulqa/mc_task.json";
  const auto eval_base = [&](const std::string& args) {
    return run("eval --model " + tmp / "base" + " --out " + tmp / "out" + " " + args);
  };
  // One --option list applies to every suite: xstest reading mc_task.json as CSV must fail clearly.
  auto r = eval_base("--suite truthfulqa_mc --suite xstest --option limit=20" + tqa_data);
  INFO(r.output);
  CHECK(r.exit_code == 2);
  r = eval_base("--suite truthfulqa_mc --option limit=20" + tqa_data);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto tqa = read_json(tmp / "out/evals/truthfulqa_mc.json");
  CHECK(tqa["items"] == 20);
  const double mc2 = tqa["scores"]["mc2"]["value"].get<double>();
  CHECK(mc2 > 0.0);
  CHECK(mc2 < 1.0);
  // Without listed options (labels: none) the order cannot matter: every shift scores as the canonical.
  for (const auto& p : tqa["robustness"]["perturbations"])
    if (p["axis"] == "order") CHECK(p["score"] == tqa["scores"]["acc"]["value"]);
  // The model-free audit on all 817 items flags TruthfulQA MC1's known length bias: the longest
  // answer is right 35% of the time against 22% chance.
  r = run("eval --suite truthfulqa_mc --audit-only" + tqa_data);
  REQUIRE(r.exit_code == 0);
  const auto audit = nlohmann::json::parse(r.output)["audit"];
  CHECK(audit["beating_threshold"] == nlohmann::json::array({"always_longest"}));
  r = eval_base("--suite xstest --option data=" + shared +
                "/xstest/xstest_prompts.csv --option limit=12 --option max_new_tokens=6");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto xs = read_json(tmp / "out/evals/xstest.json");
  CHECK(xs["items"] == 12);
  CHECK(xs["scores"]["harmful_compliance"]["n"].get<int>() > 0);  // evenly spaced: both labels present
  CHECK(xs["scores"]["over_refusal"]["n"].get<int>() > 0);
}
