// Running this executable again as a child process: `posttrain variants` runs each variant in its
// own process, and the hackathon judge replays each submission in one, under a wall-clock limit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

struct ChildResult {
  int exit_code = -1;  // -1: did not start, or ended by a signal
  bool timed_out = false;  // killed (SIGKILL, with its process group) at the time limit
};

// Runs /proc/self/exe with `args`. stdout and stderr go to `log_path` when it is given (else they
// are inherited). With `seconds` > 0 the child runs in a process group of its own, and it and every
// process it started are killed when it runs longer than that, or when we get SIGINT / SIGTERM
// (then we die of that signal too); without a limit it stays in ours, so Ctrl-C stops it as well.
ChildResult run_self(const std::vector<std::string>& args, double seconds = 0, const std::string& log_path = "");

// The same, run through `wrapper` (a sandbox's command line, e.g. bwrap's, which then runs this
// executable with `args`) and with resource limits set in the child before it starts: its address
// space and CPU time (0 = no limit), inherited by everything it runs.
struct ChildLimits {
  std::vector<std::string> wrapper;
  uint64_t memory_bytes = 0;
  uint64_t cpu_seconds = 0;
};
ChildResult run_self(const std::vector<std::string>& args, double seconds, const std::string& log_path,
                     const ChildLimits& limits);

}  // namespace posttrain
