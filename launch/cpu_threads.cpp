#include "launch/cpu_threads.h"

#include <dlfcn.h>
#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace posttrain {

namespace {

int positive_env(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::max(0, std::atoi(value)) : 0;  // "2(x3)" (Slurm) reads as 2
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

CpuThreads& last_configuration() {
  static CpuThreads configured;
  return configured;
}

}  // namespace

const CpuThreads& configured_cpu_threads() { return last_configuration(); }

CpuThreads configure_cpu_threads() {
  int ranks_here = positive_env("LOCAL_WORLD_SIZE");
  if (ranks_here == 0) ranks_here = positive_env("SLURM_NTASKS_PER_NODE");
  int threads = positive_env("OMP_NUM_THREADS");
  if (threads == 0) threads = std::max(1, usable_cpus() / std::max(1, ranks_here));

  // OpenBLAS says how it was built: 0 serial, 1 pthreads, 2 OpenMP. Looked up at run time because
  // Debian ships both builds behind one soname (update-alternatives picks).
  using GetParallel = int (*)();
  using SetThreads = void (*)(int);
  const auto get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  const auto set_blas_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  const int parallel = get_parallel ? get_parallel() : -1;

  CpuThreads out;
  out.blas = parallel == 0   ? "openblas-serial"
             : parallel == 1 ? "openblas-pthreads"
             : parallel == 2 ? "openblas-openmp"
                             : "other";
  if (parallel == 1) {
    out.threads = 1;
    out.blas_threads = threads;
  } else {
    out.threads = threads;
    out.blas_threads = parallel == 0 ? 1 : threads;
  }
  torch::set_num_threads(out.threads);
  if (set_blas_threads && parallel >= 1) set_blas_threads(out.blas_threads);
  last_configuration() = out;
  return out;
}

}  // namespace posttrain
