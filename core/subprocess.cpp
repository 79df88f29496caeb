#include "core/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace posttrain {

namespace {

volatile sig_atomic_t g_interrupted = 0;  // the signal that stopped us while a limited child ran
void note_signal(int sig) { g_interrupted = sig; }

}  // namespace

ChildResult run_self(const std::vector<std::string>& args, double seconds, const std::string& log_path) {
  return run_self(args, seconds, log_path, ChildLimits{});
}

ChildResult run_self(const std::vector<std::string>& args, double seconds, const std::string& log_path,
                     const ChildLimits& limits) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> argv_store = limits.wrapper;
  argv_store.push_back(self);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  ChildResult result;
  const pid_t pid = ::fork();
  if (pid < 0) return result;
  if (pid == 0) {
    if (seconds > 0) ::setpgid(0, 0);  // its own group, so a time limit stops everything it started
    if (!log_path.empty()) {
      const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) ::dup2(fd, STDOUT_FILENO), ::dup2(fd, STDERR_FILENO);
    }
    if (limits.memory_bytes > 0) {
      const rlimit memory{limits.memory_bytes, limits.memory_bytes};
      ::setrlimit(RLIMIT_AS, &memory);
    }
    if (limits.cpu_seconds > 0) {
      const rlimit cpu{limits.cpu_seconds, limits.cpu_seconds};
      ::setrlimit(RLIMIT_CPU, &cpu);
    }
    ::execv(argv_store.front().c_str(), argv.data());
    ::_exit(127);
  }
  if (seconds > 0) ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before a kill
  // A child in its own group does not get the terminal's Ctrl-C: catch it (and SIGTERM) here, stop
  // the child's group, then die of the same signal.
  struct sigaction catcher {
  }, old_int{}, old_term{};
  if (seconds > 0) {
    catcher.sa_handler = note_signal;
    ::sigemptyset(&catcher.sa_mask);
    g_interrupted = 0;
    ::sigaction(SIGINT, &catcher, &old_int);
    ::sigaction(SIGTERM, &catcher, &old_term);
  }
  const auto restore = [&] {
    if (seconds <= 0) return;
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    if (g_interrupted) ::raise(g_interrupted);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, seconds > 0 ? WNOHANG : 0);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      restore();
      return result;
    }
    if (g_interrupted || std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.timed_out = !g_interrupted;
      restore();
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  restore();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace posttrain
