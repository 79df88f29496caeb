// SFT end to end through the CLI: the loss is the token-weighted mean of -log p over assistant tokens
// (checked against the model's own log-probs), runs are bit-reproducible, a SIGKILLed run resumes to
// the same weights, gradient accumulation equals one big batch, and bad data names file:line.
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "datasets/sft_data.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "tests/test_util.h"
#include "tests/weights_util.h"
#include "trainers/batch.h"
#include "trainers/loop.h"

namespace {

// Runs `posttrain run` with an isolated cache shared by the tests (bases are built once).
test::CommandResult run_recipe(const std::string& recipe, const std::string& overrides = "") {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " + recipe + " " +
                   overrides);
}

std::string write_recipe(const test::TempDir& tmp, const std::string& extra = "") {
  const std::string path = tmp / "recipe.yaml";
  test::write_text(path,
                   "method: sft\nseed: 5\nbase: {preset: tiny, seed: 0}\n"
                   "data: {train: " +
                       test::source_dir() +
                       "/recipes/data/sft_demo_chat.jsonl, max_length: 48}\n"
                       "train: {steps: 6, batch_size: 4, micro_batch_size: 2, lr: 2.0e-3, warmup_steps: 1}\n"
                       "checkpoint: {every: 2, keep_last: 2}\n" +
                       extra);
  return path;
}

}  // namespace

TEST_CASE("SFT step-1 loss equals the mean -log p of the assistant tokens under the base", "[trainers][sft]") {
  test::TempDir tmp("sft-loss");
  // One example, so the first step's batch is known: the loss is computed before any update.
  test::write_text(
      tmp / "one.jsonl",
      R"({"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]})"
      "\n");
  const std::string recipe = write_recipe(tmp, "output_dir: " + tmp / "run" + "\n");
  auto result = run_recipe(
      recipe, "data.train=" + tmp / "one.jsonl" + " train.steps=1 train.batch_size=2 train.micro_batch_size=1");
  REQUIRE(result.exit_code == 0);
  const double reported = test::run_metrics(tmp / "run")[0]["loss"].get<double>();

  auto base = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0");
  auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  auto chat = posttrain::render_chat(tokenizer, {{"user", "What is 2+2?"}, {"assistant", "2 + 2 = 4."}}, false);
  std::vector<int64_t> ids(chat.ids.begin(), chat.ids.end());
  auto logp = posttrain::sequence_logprobs(*base, ids);  // logp[t-1] = log p(ids[t] | ids[<t])
  double sum = 0;
  int count = 0;
  for (size_t t = chat.assistant_spans[0].first; t < chat.assistant_spans[0].second; ++t, ++count) sum -= logp[t - 1];
  // Qwen3's template shows a finished last turn with an empty think block: trained on, as rendered.
  CHECK(count == static_cast<int>(tokenizer.encode("<think>\n\n</think>\n\n2 + 2 = 4.").size()) + 1);  // + <|im_end|>
  // The batch holds the same example twice (batch 2 of a 1-example dataset): the mean is unchanged.
  CHECK(reported == Approx(sum / count).epsilon(1e-5));
}

TEST_CASE("loss masks cover exactly the assistant turns", "[trainers][sft]") {
  auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  test::TempDir tmp("sft-mask");
  test::write_text(
      tmp / "d.jsonl",
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]})"
      "\n"
      R"({"prompt": "Reverse abc:", "completion": " cba"})"
      "\n"
      R"({"text": "Plain text to model."})"
      "\n");
  posttrain::DataSpec spec;
  spec.train = tmp / "d.jsonl";
  auto data = posttrain::tokenize_sft_jsonl(spec, tokenizer);
  REQUIRE(data.size() == 3);
  auto batch = posttrain::make_lm_batch(data, {0, 1, 2}, tokenizer.pad_id());
  auto targets_of = [&](int64_t row) {
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < batch.targets.size(1); ++t)
      if (batch.targets[row][t].item<int64_t>() != posttrain::kIgnoreIndex)
        ids.push_back(static_cast<int32_t>(batch.targets[row][t].item<int64_t>()));
    return tokenizer.decode(ids);
  };
  // Qwen3's template: an earlier turn as written, the last with its (empty) think block.
  CHECK(targets_of(0) == "Hello.<|im_end|><think>\n\n</think>\n\nGoodbye.<|im_end|>");
  CHECK(targets_of(1) == " cba<|im_end|>");
  CHECK(targets_of(2) == " text to model.<|im_end|>");  // language modelling: every token after the first
  CHECK(batch.loss_tokens == posttrain::count_loss_tokens(data, {0, 1, 2}));
  // It trains: TRL's {"text"} records through `posttrain run`.
  const std::string recipe = write_recipe(tmp, "output_dir: " + tmp / "run" + "\n");
  test::write_text(tmp / "lm.jsonl", "{\"text\": \"The sky is blue.\"}\n{\"text\": \"Grass is green.\"}\n");
  auto result = run_recipe(recipe, "data.train=" + tmp / "lm.jsonl" + " data.format=text train.steps=2");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK(test::run_metrics(tmp / "run").size() == 2);
}

TEST_CASE("same recipe and seed give a bit-identical final checkpoint", "[trainers][sft]") {
  test::TempDir tmp("sft-repro");
  const std::string recipe = write_recipe(tmp);
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "a").exit_code == 0);
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "b").exit_code == 0);
  const auto a = test::read_text(tmp / "a/final/model.safetensors"),
             b = test::read_text(tmp / "b/final/model.safetensors");
  CHECK(a == b);
  auto ma = test::run_metrics(tmp / "a");
  REQUIRE(ma.size() == 6);
  CHECK(ma.back()["loss"].get<double>() < ma.front()["loss"].get<double>());
  // The resolved recipe reproduces the run (it names its own output_dir, so point it elsewhere).
  REQUIRE(run_recipe(tmp / "a/recipe.resolved.yaml", "output_dir=" + tmp / "from-resolved").exit_code == 0);
  CHECK(test::read_text(tmp / "from-resolved/final/model.safetensors") == a);
  // A different seed changes the data order and so the weights.
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "c seed=6").exit_code == 0);
  CHECK(test::read_text(tmp / "c/final/model.safetensors") != a);
  auto manifest = nlohmann::json::parse(test::read_text(tmp / "a/manifest.json"));
  CHECK(manifest["status"] == "completed");
  CHECK(manifest["base"]["sha256"].get<std::string>().size() == 64);
  CHECK(manifest["data"]["examples"] == 64);
}

TEST_CASE("a run killed with SIGKILL resumes to the same weights as an uninterrupted run", "[trainers][sft][resume]") {
  test::TempDir tmp("sft-resume");
  const std::string recipe = write_recipe(tmp, "");
  const std::string steps = " train.steps=10";
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "whole" + steps).exit_code == 0);

  // Start the same run in the background, kill it hard once a mid-run checkpoint is complete.
  const std::string run_dir = tmp / "killed";
  const std::string command = "POSTTRAIN_CACHE=" + test::test_cache_dir() + " exec " + test::posttrain_bin() + " run " +
                              recipe + " output_dir=" + run_dir + steps + " > " + tmp / "killed.log" + " 2>&1";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  bool killed = false;
  for (int i = 0; i < 6000 && !killed; ++i) {
    if (test::fs::exists(run_dir + "/checkpoints/step-000004/trainer_state.json")) {
      kill(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(killed);
  REQUIRE(WIFSIGNALED(status));
  CHECK(nlohmann::json::parse(test::read_text(run_dir + "/manifest.json"))["status"] == "running");
  CHECK_FALSE(test::fs::exists(run_dir + "/final"));
  // What the killed run logged after its last checkpoint (here a step it never reached) must go.
  {
    std::ofstream metrics(run_dir + "/metrics.jsonl", std::ios::app);
    metrics << R"({"step": 99, "loss": 1.0})"
            << "\n";
  }
  // A newer checkpoint folder half removed (its marker left, its weights gone) is not complete.
  test::fs::create_directories(run_dir + "/checkpoints/step-000009");
  test::write_text(run_dir + "/checkpoints/step-000009/trainer_state.json", R"({"step": 9, "optimizer_steps": 9})");

  auto resumed = run_recipe(recipe, "output_dir=" + run_dir + steps);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(run_dir + "/final/model.safetensors") ==
        test::read_text(tmp / "whole/final/model.safetensors"));
  // metrics.jsonl has each step once, as the uninterrupted run's does.
  std::vector<int64_t> logged;
  for (const auto& m : test::run_metrics(run_dir)) logged.push_back(m["step"].get<int64_t>());
  CHECK(logged == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  // keep_last: only the two newest checkpoints remain.
  int checkpoints = 0;
  for (const auto& e : test::fs::directory_iterator(run_dir + "/checkpoints"))
    checkpoints += e.is_directory() && e.path().filename() != "step-000009";  // the planted one stays, unused
  CHECK(checkpoints == 2);
}

TEST_CASE("gradient accumulation: 4 micro-steps of 1 equal one micro-step of 4", "[trainers][sft]") {
  test::TempDir tmp("sft-accum");
  const std::string recipe = write_recipe(tmp);
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "big train.micro_batch_size=4 train.steps=3").exit_code == 0);
  REQUIRE(run_recipe(recipe, "output_dir=" + tmp / "small train.micro_batch_size=1 train.steps=3").exit_code == 0);
  auto big = test::run_metrics(tmp / "big"), small = test::run_metrics(tmp / "small");
  for (size_t i = 0; i < big.size(); ++i)
    CHECK(small[i]["loss"].get<double>() == Approx(big[i]["loss"].get<double>()).epsilon(1e-5));
  CHECK(test::relative_weight_difference(tmp / "big/final", tmp / "small/final") < 1e-3);
}

TEST_CASE("bad training data names file:line, and skip_bad_records skips and counts", "[trainers][sft][data]") {
  test::TempDir tmp("sft-bad");
  test::write_text(
      tmp / "bad.jsonl",
      std::string(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})") + "\n" +
          R"({"messages": [{"role": "user", "content": "a"}]})" + "\n{oops\n" +
          R"({"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})" + "\n");
  const std::string recipe = write_recipe(tmp, "output_dir: " + tmp / "run" + "\n");
  auto result = run_recipe(recipe, "data.train=" + tmp / "bad.jsonl" + " train.steps=1");
  CHECK(result.exit_code == 2);
  CHECK(result.output.find(tmp / "bad.jsonl" + ":2: \"messages\" has no assistant turn") != std::string::npos);
  auto skipped = run_recipe(recipe, "data.train=" + tmp / "bad.jsonl" + " data.skip_bad_records=true train.steps=1");
  REQUIRE(skipped.exit_code == 0);
  // Reported when tokenizing, and again from the shard when a later run reuses it.
  CHECK(skipped.output.find(" 2 skipped") != std::string::npos);
  auto manifest = nlohmann::json::parse(test::read_text(tmp / "run/manifest.json"));
  CHECK(manifest["data"]["skipped"] == 2);
  CHECK(manifest["data"]["examples"] == 2);
  // Each run below in a fresh folder: rerun into `run` with other data, it would be refused as a
  // changed recipe before its data is read.
  auto missing = run_recipe(recipe, "data.train=" + tmp / "nope.jsonl" + " output_dir=" + tmp / "missing");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("data file not found") != std::string::npos);
  // A record that repeats a key (at any depth) would keep one value in silence.
  test::write_text(
      tmp / "twice.jsonl",
      std::string(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})") + "\n" +
          R"({"messages": [{"role": "user", "content": "a", "content": "c"}, {"role": "assistant", "content": "b"}]})" +
          "\n");
  auto twice = run_recipe(recipe, "data.train=" + tmp / "twice.jsonl" + " train.steps=1 output_dir=" + tmp / "twice");
  CHECK(twice.exit_code == 2);
  CHECK(twice.output.find(tmp / "twice.jsonl" + ":2: duplicate key \"content\" in one object") != std::string::npos);
  // A role the chat template has no turn for (Qwen3's drops it) is named with its record's line.
  test::write_text(tmp / "role.jsonl",
                   R"({"messages": [{"role": "bot", "content": "a"}, {"role": "assistant", "content": "b"}]})"
                   "\n");
  posttrain::DataSpec spec;
  spec.train = tmp / "role.jsonl";
  const auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  CHECK(test::user_error_of([&] {
          posttrain::tokenize_sft_jsonl(spec, tokenizer);
        }).find(tmp / "role.jsonl" + ":1: " + test::tokenizer_dir()) != std::string::npos);
  CHECK(test::user_error_of([&] {
          posttrain::tokenize_sft_jsonl(spec, tokenizer);
        }).find("messages[0] (role \"bot\")") != std::string::npos);
}

TEST_CASE("packed rows give the same per-token log-probs as one example per row", "[trainers][sft][packing]") {
  auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  posttrain::DataSpec spec;
  spec.train = test::source_dir() + "/recipes/data/sft_demo_chat.jsonl";
  auto data = posttrain::tokenize_sft_jsonl(spec, tokenizer);
  const std::vector<int64_t> examples = {3, 17, 5, 40, 22, 9};
  auto padded = posttrain::make_lm_batch(data, examples, tokenizer.pad_id());
  auto packed = posttrain::make_packed_lm_batch(data, examples, tokenizer.pad_id(), 96);
  CHECK(packed.input_ids.size(0) < padded.input_ids.size(0));  // fewer rows: it really packed
  CHECK(packed.loss_tokens == padded.loss_tokens);
  CHECK(packed.tokens == padded.tokens);

  auto model = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0");
  torch::NoGradGuard no_grad;
  auto a = posttrain::batch_token_logprobs(*model, padded), b = posttrain::batch_token_logprobs(*model, packed);
  // The same multiset of per-token log-probs: compare sorted non-zero values.
  auto nonzero_sorted = [](const torch::Tensor& t) { return std::get<0>(t.index({t.ne(0)}).sort()); };
  auto sa = nonzero_sorted(a), sb = nonzero_sorted(b);
  REQUIRE(sa.numel() == padded.loss_tokens);
  REQUIRE(sb.numel() == sa.numel());
  CHECK((sa - sb).abs().max().item<double>() < 1e-4);
}

TEST_CASE("a non-finite loss stops the run naming the step, or is skipped when asked", "[trainers][sft]") {
  test::TempDir tmp("sft-nan");
  // A base whose final norm weight is NaN: every loss is NaN.
  auto model = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0");
  {
    torch::NoGradGuard no_grad;
    model->model->norm->weight.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  posttrain::SaveOptions save;
  save.tokenizer_dir = test::tokenizer_dir();
  posttrain::save_model(*model, tmp / "nan-base", save);
  const std::string recipe = write_recipe(tmp, "");
  auto stopped = run_recipe(recipe, "base=" + tmp / "nan-base" + " output_dir=" + tmp / "stop");
  CHECK(stopped.exit_code == 2);
  CHECK(stopped.output.find("step 1: loss or gradient is not finite") != std::string::npos);
  CHECK(nlohmann::json::parse(test::read_text(tmp / "stop/manifest.json"))["status"] == "failed");
  auto skipped = run_recipe(
      recipe, "base=" + tmp / "nan-base" + " output_dir=" + tmp / "skip train.on_nonfinite=skip train.steps=2");
  CHECK(skipped.exit_code == 0);
  CHECK(skipped.output.find("step 2: non-finite loss or gradient, step skipped") != std::string::npos);
}

TEST_CASE("tempered log-probs are those of softmax(logits / T), as RL rollouts sample", "[trainers][rl]") {
  // By hand: logits [2, 0] at T = 0.7 give log pi_T(0) = -log(1 + e^(-2 / 0.7)) = -0.0558 (at T = 1: -0.1269).
  auto hidden = torch::tensor({{1.0f, 0.0f}}), weight = torch::tensor({{2.0f, 0.0f}, {0.0f, 0.0f}});
  const auto target = torch::tensor({0}, torch::kInt64);
  CHECK(posttrain::chunked_token_logprobs(hidden / 0.7, weight, target).item<double>() == Approx(-0.0558).margin(1e-4));
  CHECK(posttrain::chunked_token_logprobs(hidden, weight, target).item<double>() == Approx(-0.1269).margin(1e-4));

  // On a model: against the whole logits divided by T and a plain log_softmax (no chunking).
  auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  posttrain::DataSpec spec;
  spec.train = test::source_dir() + "/recipes/data/sft_demo_chat.jsonl";
  auto data = posttrain::tokenize_sft_jsonl(spec, tokenizer);
  auto batch = posttrain::make_lm_batch(data, {0, 1}, tokenizer.pad_id());
  auto model = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0");
  torch::NoGradGuard no_grad;
  const double T = 0.7;
  auto tempered = posttrain::batch_token_logprobs(*model, batch, false, nullptr, T);  // [B * (T-1)]
  const int64_t B = batch.input_ids.size(0), L = batch.input_ids.size(1);
  auto mask = posttrain::causal_mask(batch.key_padding, B, L, 0, torch::kCPU);
  auto h = model->hidden_states(batch.input_ids, batch.positions, mask).narrow(1, 0, L - 1);  // [B, L-1, H]
  auto logp = torch::log_softmax(torch::matmul(h, model->lm_head_weight().t()) / T, -1);  // [B, L-1, V]
  auto targets = batch.targets.clamp_min(0);
  auto expected = logp.gather(2, targets.unsqueeze(2)).squeeze(2) * batch.targets.ne(posttrain::kIgnoreIndex);
  CHECK((tempered.view({B, -1}) - expected).abs().max().item<double>() < 1e-4);
  CHECK((posttrain::batch_token_logprobs(*model, batch) - tempered).abs().max().item<double>() > 1e-3);  // T matters
}

TEST_CASE("a changed recipe does not resume silently into a run of other settings", "[trainers][sft][resume]") {
  test::TempDir tmp("sft-changed");
  const std::string recipe = write_recipe(tmp, "output_dir: " + tmp / "run" + "\n");
  REQUIRE(run_recipe(recipe, "train.steps=2").exit_code == 0);
  // The same settings resume (nothing left to do); other settings are refused, naming the change.
  CHECK(run_recipe(recipe, "train.steps=2").exit_code == 0);
  const auto changed = run_recipe(recipe, "train.steps=2 train.lr=0.004");
  INFO(changed.output);
  CHECK(changed.exit_code == 2);
  CHECK(changed.output.find("holds a run of other settings (train.lr: 0.002 -> 0.004)") != std::string::npos);
  // Asked for, it resumes and says so in the manifest.
  const auto allowed = run_recipe(recipe, "train.steps=4 --resume-with-changes");
  INFO(allowed.output);
  REQUIRE(allowed.exit_code == 0);
  const auto manifest = nlohmann::json::parse(test::read_text(tmp / "run/manifest.json"));
  CHECK(manifest["resumed_with_changes"] == nlohmann::json::array({"train.steps: 2 -> 4"}));
}

TEST_CASE("an unusable output_dir or a full disk names the path and leaves no partial checkpoint",
          "[trainers][sft][faults]") {
  test::TempDir tmp("sft-disk");
  const std::string recipe = write_recipe(tmp);
  test::write_text(tmp / "a-file", "not a folder\n");
  auto file = run_recipe(recipe, "output_dir=" + tmp / "a-file train.steps=2");  // also builds the base
  CHECK(file.exit_code == 2);
  CHECK(file.output.find(tmp / "a-file is a file, not a folder") != std::string::npos);
  auto proc = run_recipe(recipe, "output_dir=/proc/posttrain-test-run train.steps=2");
  CHECK(proc.exit_code == 2);
  CHECK(proc.output.find("cannot create /proc/posttrain-test-run") != std::string::npos);

  // A file-size limit makes the first checkpoint's weights fail to write as a full disk would
  // (EFBIG instead of ENOSPC; the same write path), even for root.
  const std::string run_dir = tmp / "full";
  auto full = test::run("trap '' XFSZ; ulimit -f 2048; POSTTRAIN_CACHE=" + test::test_cache_dir() + " " +
                        test::posttrain_bin() + " run " + recipe + " output_dir=" + run_dir +
                        " train.steps=2 checkpoint.every=2");
  INFO(full.output);
  CHECK(full.exit_code == 2);
  CHECK(full.output.find("model.safetensors: write failed (File too large)") != std::string::npos);
  CHECK(nlohmann::json::parse(test::read_text(run_dir + "/manifest.json"))["status"] == "failed");
  std::vector<std::string> leftovers;
  for (const auto& e : test::fs::recursive_directory_iterator(run_dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".partial") != std::string::npos || name.find(".tmp") != std::string::npos)
      leftovers.push_back(e.path().string());
  }
  CHECK(leftovers.empty());
  CHECK_FALSE(test::fs::exists(run_dir + "/checkpoints/step-000002"));
}
