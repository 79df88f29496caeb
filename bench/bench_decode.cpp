// Batch-1 decoding against the machine's memory limit. Each new token multiplies one row by every
// weight matrix, so a decode step has to read all the weights once: the fastest possible rate is
// read bandwidth / bytes read per token. This bench measures both in the same run and reports the
// share reached, with the peak resident memory of the decoding process.
//   build/bin/bench_decode [--preset qwen2.5-0.5b] [--prompt 64] [--new-tokens 32] [--repeats 5]
//                          [--threads 0]
// Decode time excludes the prompt: (generate 1 + N tokens) - (generate 1 token). Bandwidth: torch's
// vectorised sum over 1 GiB on the same threads, measured again before each repeat; every number
// printed is the median over repeats.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "launch/cpu_threads.h"
#include "models/checkpoint.h"
#include "models/config.h"
#include "models/generate.h"
#include "models/qwen.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// GB/s of one sum over `buffer`, a block far larger than any cache.
double read_bandwidth_gbs(const torch::Tensor& buffer) {
  auto start = std::chrono::steady_clock::now();
  const double total = buffer.sum().item<double>();
  const double s = seconds_since(start);
  if (total != static_cast<double>(buffer.numel())) std::abort();  // keeps the sum from being skipped
  return buffer.numel() * 4.0 / s / 1e9;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "qwen2.5-0.5b";
  int64_t prompt_length = 64, new_tokens = 32, repeats = 5, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--preset")
      preset = value;
    else if (flag == "--prompt")
      prompt_length = std::atoll(value);
    else if (flag == "--new-tokens")
      new_tokens = std::atoll(value);
    else if (flag == "--repeats")
      repeats = std::atoll(value);
    else if (flag == "--threads")
      threads = std::atoll(value);
    else {
      std::cerr << "bench_decode: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (threads > 0) ::setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
  posttrain::keep_large_allocations_on_heap();  // as the posttrain executable does
  const posttrain::CpuThreads cpu_threads = posttrain::configure_cpu_threads();
  const auto config = posttrain::preset_config(preset);
  posttrain::QwenForCausalLM model(config);
  posttrain::init_weights(*model, 0);
  model->eval();

  const std::vector<std::vector<int32_t>> prompt = {std::vector<int32_t>(static_cast<size_t>(prompt_length), 9707)};
  auto timed_generate = [&](int64_t tokens) {
    posttrain::GenerationOptions options;  // greedy, no stop ids: exactly `tokens` new tokens
    options.max_new_tokens = tokens;
    auto start = std::chrono::steady_clock::now();
    posttrain::generate(*model, prompt, options);
    return seconds_since(start);
  };
  timed_generate(1 + new_tokens);  // warm up: allocator, thread pool, first touch of the weights
  const double rss_mib = peak_rss_mib();  // of decoding, before the bandwidth buffer exists

  // Bytes one decode step reads: every parameter, except that an untied embedding table is only
  // indexed (one row); a tied one is read in full as the LM head. Plus the KV cache at its mean length.
  double weight_bytes = 0;
  for (const auto& p : model->parameters()) weight_bytes += p.numel() * p.element_size();
  if (!config.tie_word_embeddings)
    weight_bytes -= model->model->embed_tokens->weight.numel() * model->model->embed_tokens->weight.element_size();
  const double cache_bytes = 2.0 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim *
                             (prompt_length + new_tokens / 2.0) * sizeof(float);
  const double bytes_per_token = weight_bytes + cache_bytes;

  // A shared VM's bandwidth drifts from minute to minute, so each repeat measures the bandwidth
  // right before its decode and the share is the median over repeats of decode / limit.
  auto buffer = torch::ones({(int64_t{1} << 30) / 4}, torch::kFloat32);  // [2^28], 1 GiB
  read_bandwidth_gbs(buffer);  // first touch
  std::vector<double> bandwidths, decode_rates, shares;
  for (int64_t r = 0; r < repeats; ++r) {
    const double bandwidth = std::max(read_bandwidth_gbs(buffer), read_bandwidth_gbs(buffer));
    const double prefill_s = timed_generate(1), full_s = timed_generate(1 + new_tokens);
    const double rate = new_tokens / (full_s - prefill_s);
    bandwidths.push_back(bandwidth);
    decode_rates.push_back(rate);
    shares.push_back(rate / (bandwidth * 1e9 / bytes_per_token));
  }
  const double bandwidth = median(bandwidths), decode_tps = median(decode_rates), share = median(shares);
  const double limit_tps = bandwidth * 1e9 / bytes_per_token;

  std::printf("preset %s, batch 1, prompt %lld, %lld new tokens, float32, %d threads (%s, %d BLAS threads)\n",
              preset.c_str(), static_cast<long long>(prompt_length), static_cast<long long>(new_tokens),
              cpu_threads.threads, cpu_threads.blas.c_str(), cpu_threads.blas_threads);
  std::printf("  read bandwidth        %9.1f GB/s\n", bandwidth);
  std::printf("  bytes read per token  %9.1f MB (weights %.1f MB + KV cache %.1f MB)\n", bytes_per_token / 1e6,
              weight_bytes / 1e6, cache_bytes / 1e6);
  std::printf("  memory limit          %9.1f tokens/s\n", limit_tps);
  std::printf("  decode                %9.1f tokens/s\n", decode_tps);
  std::printf("  share of the limit    %9.0f%% (median over %lld repeats of decode / limit)\n", 100 * share,
              static_cast<long long>(repeats));
  std::printf("  peak RSS (decoding)   %9.0f MiB\n", rss_mib);
  nlohmann::json result = {{"bench", "decode"},
                           {"preset", preset},
                           {"prompt", prompt_length},
                           {"new_tokens", new_tokens},
                           {"threads", cpu_threads.threads},
                           {"read_bandwidth_gbs", bandwidth},
                           {"bytes_per_token", bytes_per_token},
                           {"limit_tokens_per_s", limit_tps},
                           {"decode_tokens_per_s", decode_tps},
                           {"share_of_limit", share},
                           {"peak_rss_mib", rss_mib}};
  std::cout << result.dump() << "\n";
  return 0;
}
