// Model throughput on this machine: forward + chunked log-probs (the scoring path of every trainer
// and eval), forward + backward (training), and KV-cache generation, in tokens/s; MFU against a bare
// float32 matmul measured in the same run; peak resident memory.
//   build/bin/bench_model [--preset small] [--batch 4] [--seq 256] [--new-tokens 32] [--threads 0]
//                         [--device cpu|cuda] [--precision fp32|bf16]
// bf16 = autocast to bfloat16 with float32 weights (train.precision: bf16); its MFU is against a bare
// bf16 matmul. scripts/device/bench_hf.py times HF transformers on the same shape.
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "launch/cpu_threads.h"
#include "models/autocast.h"
#include "models/checkpoint.h"
#include "models/config.h"
#include "models/flops.h"
#include "models/generate.h"
#include "models/logprobs.h"
#include "models/qwen.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "small", device_name = "cpu", precision = "fp32";
  int64_t batch = 4, seq = 256, new_tokens = 32, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--preset"))
      preset = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seq"))
      seq = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--new-tokens"))
      new_tokens = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--device"))
      device_name = argv[i + 1];
    else if (!std::strcmp(argv[i], "--precision"))
      precision = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoll(argv[i + 1]);
  }
  if (threads > 0) ::setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
  posttrain::keep_large_allocations_on_heap();  // as the posttrain executable does
  const posttrain::CpuThreads cpu_threads = posttrain::configure_cpu_threads();
  const auto config = posttrain::preset_config(preset);
  const auto device = posttrain::parse_device(device_name);
  const bool bf16 = precision == "bf16";
  if (bf16 && !device.is_cuda()) {
    std::fprintf(stderr, "--precision bf16 needs --device cuda\n");
    return 2;
  }
  posttrain::QwenForCausalLM model(config);
  posttrain::init_weights(*model, 0);
  model->to(device);
  const double peak = posttrain::measure_matmul_flops(device, bf16 ? torch::kBFloat16 : torch::kFloat32) / 1e9;
  auto sync = [&] {
    if (device.is_cuda()) model->lm_head_weight().sum().item<double>();  // waits for queued kernels
  };

  auto ids = torch::randint(0, 150000, {batch, seq}, torch::kInt64).to(device);
  auto positions = torch::arange(seq, torch::kInt64).unsqueeze(0).expand({batch, seq}).to(device);
  auto targets = ids.narrow(1, 1, seq - 1).reshape({-1});
  const double tokens = static_cast<double>(batch * seq);
  const double flops_per_token = posttrain::forward_flops_per_token(config, seq);

  auto score = [&] {
    posttrain::Bf16Autocast autocast(bf16);
    auto hidden = model->hidden_states(ids, positions);
    auto h = hidden.narrow(1, 0, seq - 1).reshape({-1, config.hidden_size});
    return posttrain::chunked_token_logprobs(h, model->lm_head_weight(), targets);
  };
  double forward_s;
  {
    torch::NoGradGuard no_grad;
    score();  // warm up
    sync();
    auto start = std::chrono::steady_clock::now();
    score();
    sync();
    forward_s = seconds_since(start);
  }
  score().sum().backward();  // warm up
  model->zero_grad();
  sync();
  auto start = std::chrono::steady_clock::now();
  score().sum().backward();
  sync();
  const double train_s = seconds_since(start);

  posttrain::GenerationOptions gen;
  gen.max_new_tokens = new_tokens;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(batch), std::vector<int32_t>(64, 9707));
  start = std::chrono::steady_clock::now();
  {
    posttrain::Bf16Autocast autocast(bf16);
    posttrain::generate(*model, prompts, gen);
  }
  sync();
  const double gen_s = seconds_since(start);

  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double fwd_tps = tokens / forward_s, train_tps = tokens / train_s;
  const double fwd_mfu = fwd_tps * flops_per_token / 1e9 / peak,
               train_mfu = train_tps * 3 * flops_per_token / 1e9 / peak;
  std::printf("preset %s, batch %lld x seq %lld, %s %s, %d threads (%s, %d BLAS threads); bare matmul %.1f GFLOP/s\n",
              preset.c_str(), static_cast<long long>(batch), static_cast<long long>(seq), device_name.c_str(),
              precision.c_str(), cpu_threads.threads, cpu_threads.blas.c_str(), cpu_threads.blas_threads, peak);
  std::printf("  forward + log-probs   %9.0f tokens/s   MFU %5.1f%%\n", fwd_tps, 100 * fwd_mfu);
  std::printf("  forward + backward    %9.0f tokens/s   MFU %5.1f%%   (3x forward FLOPs)\n", train_tps,
              100 * train_mfu);
  std::printf("  generate (KV cache)   %9.1f new tokens/s (batch %lld, prompt 64, %lld new)\n",
              batch * new_tokens / gen_s, static_cast<long long>(batch), static_cast<long long>(new_tokens));
  std::printf("  peak RSS              %9.0f MiB\n", usage.ru_maxrss / 1024.0);
  nlohmann::json result = {{"bench", "model"},
                           {"preset", preset},
                           {"device", device_name},
                           {"precision", precision},
                           {"batch", batch},
                           {"seq", seq},
                           {"threads", cpu_threads.threads},
                           {"blas", cpu_threads.blas},
                           {"matmul_gflops", peak},
                           {"forward_tokens_per_s", fwd_tps},
                           {"forward_mfu", fwd_mfu},
                           {"train_tokens_per_s", train_tps},
                           {"train_mfu", train_mfu},
                           {"generate_tokens_per_s", batch * new_tokens / gen_s},
                           {"peak_rss_mib", usage.ru_maxrss / 1024.0}};
  std::cout << result.dump() << "\n";
  return 0;
}
