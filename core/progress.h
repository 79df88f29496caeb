// A progress bar on stderr: step/total, the latest loss, tokens/s and ETA. Redraws in place on a
// terminal; prints one line per update otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace posttrain {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0);
  void update(int64_t done, double loss, double tokens_per_s);
  // Work without a loss (generation, judging): items done, their rate and ETA.
  void update(int64_t done);
  void finish();

 private:
  void draw(int64_t done, const char* figures);
  std::string label_;
  int64_t total_, start_;
  bool tty_;
  std::chrono::steady_clock::time_point began_;
};

}  // namespace posttrain
