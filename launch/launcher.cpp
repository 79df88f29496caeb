#include "launch/launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace posttrain {

namespace {

std::atomic<int> g_forward_signal{0};

void on_signal(int sig) { g_forward_signal = sig; }

struct Worker {
  int rank = 0, local_rank = 0;
  pid_t pid = -1;
  int output_fd = -1;  // read end of the worker's stdout+stderr
  std::thread reader;
  bool running = false;
  int status = 0;
  // When a signal (SIGSTOP, SIGTSTP) stopped it; its peers then wait in a collective until the
  // c10d timeout, so the launcher ends the job itself after LaunchOptions::stall_timeout_s.
  std::chrono::steady_clock::time_point stopped_since = std::chrono::steady_clock::time_point::max();
  int stop_signal = 0;
};

std::string self_executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) throw std::runtime_error("cannot find this executable via /proc/self/exe");
  path[n] = '\0';
  return path;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "ended abnormally";
}

bool succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// Copies a worker's output to ours line by line, each line prefixed with its rank.
void pump(int fd, int rank, std::mutex* out_mutex) {
  FILE* in = ::fdopen(fd, "r");
  if (in == nullptr) return;
  char* line = nullptr;
  size_t capacity = 0;
  const std::string prefix = "[rank " + std::to_string(rank) + "] ";
  while (::getline(&line, &capacity, in) > 0) {
    std::lock_guard<std::mutex> lock(*out_mutex);
    std::fputs(prefix.c_str(), stdout);
    std::fputs(line, stdout);
    if (line[std::strlen(line) - 1] != '\n') std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  std::free(line);
  std::fclose(in);
}

// Runs one attempt of the whole local group; returns true if every worker exited 0.
bool run_group(const LaunchOptions& o, int attempt, const std::string& exe) {
  std::mutex out_mutex;
  std::vector<Worker> workers(static_cast<size_t>(o.nproc_per_node));
  const int world = o.nnodes * o.nproc_per_node;
  for (int local = 0; local < o.nproc_per_node; ++local) {
    Worker& w = workers[static_cast<size_t>(local)];
    w.local_rank = local;
    w.rank = o.node_rank * o.nproc_per_node + local;
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::setenv("RANK", std::to_string(w.rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
      ::setenv("TORCHELASTIC_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(exe.c_str()));
      for (const auto& a : o.worker_args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      std::perror("posttrain launch: exec failed");
      ::_exit(127);
    }
    ::close(fds[1]);
    w.pid = pid;
    w.output_fd = fds[0];
    w.running = true;
    w.reader = std::thread(pump, fds[0], w.rank, &out_mutex);
  }

  int running = o.nproc_per_node;
  int failed_rank = -1;
  auto stop_others = [&](int sig) {
    for (auto& w : workers)
      if (w.running) ::kill(w.pid, sig);
  };
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (const int sig = g_forward_signal.exchange(0)) {
      std::cerr << "posttrain launch: forwarding signal " << sig << " to the workers\n";
      stop_others(sig);
      if (failed_rank < 0) failed_rank = -2;  // stopped by the user: no restart
      deadline = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(30));
    }
    for (auto& w : workers) {
      if (!w.running) continue;
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG | WUNTRACED | WCONTINUED) != w.pid) continue;
      if (WIFSTOPPED(status)) {
        w.stopped_since = std::chrono::steady_clock::now();
        w.stop_signal = WSTOPSIG(status);
        continue;
      }
      if (WIFCONTINUED(status)) {
        w.stopped_since = std::chrono::steady_clock::time_point::max();
        continue;
      }
      w.running = false;
      w.status = status;
      --running;
      if (!succeeded(status) && failed_rank == -1) {
        failed_rank = w.rank;
        std::cerr << "posttrain launch: worker rank " << w.rank << " (pid " << w.pid << ") " << describe(status)
                  << "; stopping the other workers\n";
        stop_others(SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      }
    }
    for (auto& w : workers) {
      if (!w.running || std::chrono::steady_clock::now() - w.stopped_since < std::chrono::seconds(o.stall_timeout_s))
        continue;
      std::cerr << "posttrain launch: worker rank " << w.rank << " (pid " << w.pid << ") has been stopped by signal "
                << w.stop_signal << " (" << strsignal(w.stop_signal) << ") for " << o.stall_timeout_s
                << " s; ending the job\n";
      w.stopped_since = std::chrono::steady_clock::time_point::max();
      ::kill(w.pid, SIGKILL);  // a stopped process holds SIGTERM pending; SIGKILL ends it
      if (failed_rank == -1) failed_rank = w.rank;
      stop_others(SIGTERM);
      deadline = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(10));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop_others(SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : workers) w.reader.join();
  if (failed_rank == -2) throw UserError("posttrain launch: stopped by signal");
  return failed_rank == -1;
}

}  // namespace

int launch_workers(const LaunchOptions& o) {
  if (o.nproc_per_node < 1) throw UserError("--nproc-per-node must be >= 1");
  if (o.nnodes < 1) throw UserError("--nnodes must be >= 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw UserError("--node-rank must be in 0.." + std::to_string(o.nnodes - 1));
  if (o.master_port <= 0 || o.master_port > 65535) throw UserError("--master-port must be a TCP port (1..65535)");
  if (o.max_restarts < 0) throw UserError("--max-restarts must be >= 0");
  if (o.stall_timeout_s < 1) throw UserError("--stall-timeout must be >= 1 (seconds)");
  const std::string exe = self_executable();
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  for (int attempt = 0; attempt <= o.max_restarts; ++attempt) {
    if (attempt > 0)
      std::cerr << "posttrain launch: restarting the workers (restart " << attempt << " of " << o.max_restarts << ")\n";
    if (run_group(o, attempt, exe)) return 0;
  }
  std::cerr << "posttrain launch: giving up after " << o.max_restarts << " restart(s)\n";
  return 1;
}

}  // namespace posttrain
