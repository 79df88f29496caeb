// RL rollout throughput, end to end through `posttrain run` with GRPO: the trainer times each step's
// generation (time/generate_s in metrics.jsonl) and logs the mean response length, so rollout
// tokens/s = prompts x samples x mean length / generation seconds; the median over the steps after
// the first. Shapes: the testbed's (the `small` body with the testbed's trimmed tokenizer and RL
// prompts, when runs/testbed/data exists) and a real one (qwen2.5-0.5b with the full tokenizer).
//   build/bin/bench_rollouts [--preset small] [--tokenizer DIR] [--prompts FILE] [--batch 16]
//                            [--samples 4] [--new-tokens 32] [--steps 3] [--posttrain BIN]
// --posttrain runs another build's binary (a before / after comparison on one machine).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string preset = "small", tokenizer,
              prompts = std::string(POSTTRAIN_SOURCE_DIR) + "/recipes/data/bandit_prompts.jsonl";
  std::string posttrain = POSTTRAIN_BIN;
  int batch = 16, samples = 4, new_tokens = 32, steps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--preset")
      preset = value;
    else if (flag == "--tokenizer")
      tokenizer = value;
    else if (flag == "--prompts")
      prompts = value;
    else if (flag == "--batch")
      batch = std::atoi(value.c_str());
    else if (flag == "--samples")
      samples = std::atoi(value.c_str());
    else if (flag == "--new-tokens")
      new_tokens = std::atoi(value.c_str());
    else if (flag == "--steps")
      steps = std::atoi(value.c_str());
    else if (flag == "--posttrain")
      posttrain = value;
    else {
      std::cerr << "bench_rollouts: unknown flag " << flag << "\n";
      return 2;
    }
  }
  const std::string run_dir = "/tmp/posttrain-bench-rollouts-" + preset;
  const std::string recipe = run_dir + ".yaml";
  {
    std::ofstream out(recipe);
    out << "method: grpo\nseed: 0\n"
        << "base: {preset: " << preset << ", seed: 0" << (tokenizer.empty() ? "" : ", tokenizer: " + tokenizer) << "}\n"
        << "data: {train: " << prompts << ", max_length: 128}\n"
        << "train: {steps: " << steps << ", batch_size: " << batch << ", micro_batch_size: " << batch
        << ", lr: 1.0e-5, schedule: constant}\n"
        << "grpo:\n  group_size: " << samples << "\n  max_new_tokens: " << new_tokens
        << "\n  temperature: 1.0\n  kl_coef: 0\n  rewards: [{name: regex, pattern: \"e\"}]\n";
  }
  const std::string command = "rm -rf " + run_dir + " && " + posttrain + " run " + recipe + " output_dir=" + run_dir +
                              " > " + run_dir + ".log 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "bench_rollouts: the run failed, see " << run_dir << ".log\n";
    return 1;
  }
  std::vector<double> rates;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  for (int n = 0; std::getline(in, line); ++n) {
    const auto m = nlohmann::json::parse(line);
    if (n < 1 || !m.contains("time/generate_s")) continue;  // the first step warms up
    const double tokens = static_cast<double>(batch) * samples * m["response_length"].get<double>();
    rates.push_back(tokens / m["time/generate_s"].get<double>());
  }
  if (rates.empty()) {
    std::cerr << "bench_rollouts: need at least 2 steps\n";
    return 1;
  }
  std::sort(rates.begin(), rates.end());
  const double median = rates[rates.size() / 2];
  std::printf("rollouts, preset %s%s, %d prompts x %d samples, up to %d new tokens\n", preset.c_str(),
              tokenizer.empty() ? "" : " (trimmed tokenizer)", batch, samples, new_tokens);
  std::printf("  %8.1f rollout tokens/s   (median of %zu steps)\n", median, rates.size());
  std::cout << nlohmann::json{{"bench", "rollouts"}, {"preset", preset},         {"prompts", batch},
                              {"samples", samples},  {"new_tokens", new_tokens}, {"tokens_per_s", median}}
                   .dump()
            << "\n";
  return 0;
}
