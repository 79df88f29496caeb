#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace posttrain {

Progress::Progress(std::string label, int64_t total, int64_t start)
    : label_(std::move(label)),
      total_(total),
      start_(start),
      tty_(isatty(STDERR_FILENO) != 0),
      began_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, double loss, double tokens_per_s) {
  char figures[64];
  std::snprintf(figures, sizeof(figures), "loss %.4f %.0f tok/s", loss, tokens_per_s);
  draw(done, figures);
}

void Progress::update(int64_t done) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
  char figures[64];
  std::snprintf(figures, sizeof(figures), "%.2f items/s",
                elapsed > 0.1 ? static_cast<double>(done - start_) / elapsed : 0.0);
  draw(done, figures);
}

void Progress::draw(int64_t done, const char* figures) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
  const int64_t since_start = done - start_;
  const double eta =
      since_start > 0 ? elapsed / static_cast<double>(since_start) * static_cast<double>(total_ - done) : 0.0;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  const int eta_s = static_cast<int>(eta);
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %s ETA %d:%02d:%02d%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), figures, eta_s / 3600, eta_s / 60 % 60,
               eta_s % 60, tty_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace posttrain
