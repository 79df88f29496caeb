// SFT step throughput, end to end through `posttrain run` (data, forward, backward, AdamW, logging):
// tokens/s, MFU (against the bare matmul the run times on its device) and peak RSS, as the median
// over steps after the first two (warm-up: the heap grows and
// pages fault in during the first steps). Shapes: the `small` preset, and a real model shape with short sequences.
// --lora R trains LoRA adapters of rank R (alpha 2R, every projection) instead of every weight, and
// the line adds the AdamW state's size (two float32 moments per trained parameter) against full
// fine-tuning's.
// --checkpointing 1 recomputes each decoder layer in backward (train.activation_checkpointing).
//   build/bin/bench_sft [--preset small] [--steps 12] [--batch 8] [--micro 4] [--pack TOKENS] [--lora R]
//                       [--checkpointing 1]
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
  std::string preset = "small";
  int steps = 12, batch = 8, micro = 4, pack = 0, lora = 0, checkpointing = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--preset"))
      preset = argv[i + 1];
    else if (!std::strcmp(argv[i], "--steps"))
      steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--micro"))
      micro = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--pack"))
      pack = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--lora"))
      lora = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--checkpointing"))
      checkpointing = std::atoi(argv[i + 1]);
  }
  const std::string run_dir = "/tmp/posttrain-bench-sft-" + preset + (lora > 0 ? "-lora" : "");
  const std::string command =
      std::string("rm -rf ") + run_dir + " && " + POSTTRAIN_BIN + " run " + POSTTRAIN_SOURCE_DIR +
      "/recipes/quickstart/sft.yaml base.preset=" + preset + " output_dir=" + run_dir +
      " train.steps=" + std::to_string(steps) + " train.batch_size=" + std::to_string(batch) +
      " train.micro_batch_size=" + std::to_string(micro) + " checkpoint.every=0" +
      (pack > 0 ? " data.pack=true data.max_length=" + std::to_string(pack) : std::string()) +
      (lora > 0 ? " lora.rank=" + std::to_string(lora) + " lora.alpha=" + std::to_string(2 * lora) : std::string()) +
      (checkpointing ? " train.activation_checkpointing=true" : "") + " > " + run_dir + ".log 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "bench_sft: the run failed, see " << run_dir << ".log\n";
    return 1;
  }
  std::vector<double> tps, mfu;
  double rss = 0;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  for (int n = 0; std::getline(in, line); ++n) {
    auto m = nlohmann::json::parse(line);
    rss = std::max(rss, m["peak_rss_mib"].get<double>());
    if (n < 2) continue;  // warm-up
    tps.push_back(m["tokens_per_s"].get<double>());
    mfu.push_back(m["mfu"].get<double>());
  }
  if (tps.empty()) {
    std::cerr << "bench_sft: need at least 3 steps\n";
    return 1;
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::ifstream manifest_file(run_dir + "/manifest.json");
  const auto manifest = nlohmann::json::parse(manifest_file);
  const double trainable = manifest["parameters"]["trainable"].get<double>();
  const double total = manifest["parameters"]["total"].get<double>();
  std::printf("sft step, preset %s, batch %d (micro %d), demo chat data (~40 tokens/example)%s%s\n", preset.c_str(),
              batch, micro, pack > 0 ? (", packed into rows of " + std::to_string(pack)).c_str() : "",
              lora > 0 ? (", LoRA rank " + std::to_string(lora) + " on every projection").c_str() : ", every weight");
  if (checkpointing) std::printf("  activation checkpointing: each decoder layer recomputed in backward\n");
  std::printf("  trained %.1fM of %.1fM parameters; AdamW state %.1f MiB (%.2f%% of full fine-tuning's %.1f MiB)\n",
              trainable / 1e6, total / 1e6, trainable * 8 / 1048576.0, 100 * trainable / total, total * 8 / 1048576.0);
  std::printf("  %8.0f tokens/s   MFU %5.1f%%   peak RSS %.0f MiB   (median of %zu steps)\n", median(tps),
              100 * median(mfu), rss, tps.size());
  nlohmann::json result = {{"bench", "sft_step"},
                           {"preset", preset},
                           {"batch", batch},
                           {"micro", micro},
                           {"pack", pack},
                           {"tokens_per_s", median(tps)},
                           {"mfu", median(mfu)},
                           {"peak_rss_mib", rss},
                           {"lora_rank", lora},
                           {"activation_checkpointing", checkpointing != 0},
                           {"trainable_parameters", trainable},
                           {"optimizer_state_mib", trainable * 8 / 1048576.0}};
  std::cout << result.dump() << "\n";
  return 0;
}
