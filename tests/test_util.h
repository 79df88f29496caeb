// Helpers shared by the tests: temp folders, running the CLI, and a tiny independent safetensors
// writer (so reader tests do not trust the writer they test).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace test {

// The message of the UserError `f` throws, or "" when it throws none.
inline std::string user_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const posttrain::UserError& e) {
    return e.what();
  }
  return "";
}

namespace fs = std::filesystem;

// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static std::mt19937_64 rng(std::random_device{}());
    path_ = fs::temp_directory_path() / ("posttrain-test-" + tag + "-" + std::to_string(rng()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

inline CommandResult run(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

inline std::string posttrain_bin() { return POSTTRAIN_BIN; }
inline std::string source_dir() { return POSTTRAIN_SOURCE_DIR; }
inline std::string tokenizer_dir() { return POSTTRAIN_TOKENIZER_DIR; }
// Cache for preset bases and tokenized shards shared by the tests of one build.
inline std::string test_cache_dir() { return POSTTRAIN_TEST_CACHE; }
// ../shared beside the checkout; absent in a user's fresh clone.
inline std::string shared_dir() { return source_dir() + "/../shared"; }

// A python3 that imports `modules` (e.g. "jinja2, yaml"), for peer tests: Debian's first (install-deps
// installs the peers' packages there; a python3 earlier on PATH, such as a pyenv one, may lack
// them), then PATH's. "" when neither has them.
inline std::string python_with(const std::string& modules) {
  for (const std::string python : {"/usr/bin/python3", "python3"})
    if (run(python + " -c 'import " + modules + "'").exit_code == 0) return python;
  return "";
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every line of <run_dir>/metrics.jsonl.
inline std::vector<nlohmann::json> run_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The "loss" of every training-step line of <run_dir>/metrics.jsonl (eval lines carry none).
inline std::vector<double> run_losses(const std::string& run_dir) {
  std::vector<double> out;
  for (const auto& record : run_metrics(run_dir))
    if (record.contains("loss")) out.push_back(record["loss"].get<double>());
  return out;
}

// The bandit policy of the RL tests: the tiny base after recipes/quickstart/bandit_sft.yaml (picks one
// of 8 words about uniformly; 4 contain "e"). Trained once into the test cache, then reused.
inline std::string bandit_base() {
  const std::string run_dir = test_cache_dir() + "/bandit-sft";
  // ctest -j runs several RL tests at once: one trains, the others wait on the lock.
  fs::create_directories(test_cache_dir());
  const int lock = ::open((test_cache_dir() + "/bandit-sft.lock").c_str(), O_CREAT | O_RDWR, 0644);
  ::flock(lock, LOCK_EX);
  if (!fs::exists(run_dir + "/final/config.json")) {
    fs::remove_all(run_dir);
    run("POSTTRAIN_CACHE=" + test_cache_dir() + " " + posttrain_bin() + " run " + source_dir() +
        "/recipes/quickstart/bandit_sft.yaml output_dir=" + run_dir);
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return run_dir + "/final";
}

// Resume == uninterrupted: runs `command` (a posttrain command line without output_dir) into
// <tmp>/full, copies the checkpoint of `step` (from checkpoints/ and each of `more_dirs`, e.g.
// "critic/checkpoints") into an empty <tmp>/resumed as if the first run had died there, reruns the
// command in it, and returns that run's output. The caller compares <tmp>/full with <tmp>/resumed.
inline CommandResult rerun_from_checkpoint(const TempDir& tmp, const std::string& command, int step,
                                           std::vector<std::string> more_dirs = {}) {
  auto full = run(command + " output_dir=" + tmp / "full");
  if (full.exit_code != 0) return full;
  char name[32];
  std::snprintf(name, sizeof(name), "/step-%06d", step);
  more_dirs.insert(more_dirs.begin(), "checkpoints");
  for (const auto& dir : more_dirs) {
    fs::create_directories(tmp / ("resumed/" + dir));
    fs::copy(tmp / ("full/" + dir + name), tmp / ("resumed/" + dir + name), fs::copy_options::recursive);
  }
  return run(command + " output_dir=" + tmp / "resumed");
}

// The last metrics.jsonl line that has `key`.
inline nlohmann::json last_metric_with(const std::string& run_dir, const std::string& key) {
  nlohmann::json found;
  for (const auto& record : run_metrics(run_dir))
    if (record.contains(key)) found = record;
  return found;
}

// float -> bfloat16 bits with round-to-nearest-even (what torch does).
inline uint16_t to_bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float from_bf16_bits(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

struct RawTensor {
  std::string name;
  std::string dtype;  // "F32" or "BF16"
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Writes a safetensors file by hand: u64 little-endian header length, JSON header, raw bytes.
inline void write_safetensors_by_hand(const std::string& path, const std::vector<RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    const size_t begin = data.size();
    for (float v : t.values) {
      if (t.dtype == "BF16") {
        uint16_t b = to_bf16_bits(v);
        data.append(reinterpret_cast<const char*>(&b), 2);
      } else {
        data.append(reinterpret_cast<const char*>(&v), 4);
      }
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string json = header.dump();
  std::string out(8, '\0');
  const uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  write_text(path, out + json + data);
}

}  // namespace test
