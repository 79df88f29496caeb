// How many CPU threads this process computes with. Sharing the cores between the ranks of a node (and
// between libtorch and the BLAS) matters more on CPU than any kernel: two thread pools spinning on the
// same two cores slowed a training step by a third.
#pragma once

#include <string>

namespace posttrain {

struct CpuThreads {
  int threads = 1;  // libtorch intra-op threads (and the BLAS's, when it shares libtorch's OpenMP pool)
  int blas_threads = 1;  // the BLAS's own threads
  std::string blas = "unset";  // "openblas-openmp", "openblas-pthreads", "openblas-serial" or "other"
};

// Sets the thread counts once at start: OMP_NUM_THREADS when the user set it, else the CPUs this
// process may run on divided by the ranks on this node (LOCAL_WORLD_SIZE, or Slurm's
// SLURM_NTASKS_PER_NODE), at least 1. An OpenMP OpenBLAS shares libtorch's pool, so both get that
// count. A pthreads OpenBLAS keeps its own pool, which spins between calls and would fight libtorch's
// for the cores: libtorch then runs on one thread and the BLAS on the rest.
CpuThreads configure_cpu_threads();

// What the last configure_cpu_threads() set (all 1, blas "unset", before any call): run manifests
// record it, since the thread count decides the order of floating-point sums.
const CpuThreads& configured_cpu_threads();

}  // namespace posttrain
