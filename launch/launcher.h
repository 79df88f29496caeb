// posttrain launch: a torchrun-style supervisor. Starts nproc_per_node workers (this same binary
// running `posttrain run ...`) with torchrun's environment, prefixes their output with the rank,
// forwards SIGINT/SIGTERM, stops the group when one worker fails or stays stopped, and restarts it up to
// max_restarts times (workers resume from the last complete checkpoint).
#pragma once

#include <string>
#include <vector>

namespace posttrain {

struct LaunchOptions {
  int nnodes = 1;
  int nproc_per_node = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int max_restarts = 0;
  // A worker stopped by a signal (SIGSTOP, SIGTSTP) for this long ends the job, naming its rank.
  // A worker that hangs while running is ended by its peers' c10d timeout (POSTTRAIN_DIST_TIMEOUT_S).
  int stall_timeout_s = 60;
  std::vector<std::string> worker_args;  // arguments after the binary, e.g. {"run", "recipe.yaml", "train.lr=1e-4"}
};

// Returns the launcher's exit code: 0 when every worker of some attempt exited 0, else 1.
int launch_workers(const LaunchOptions& options);

}  // namespace posttrain
