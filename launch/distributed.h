// The small Distributed interface trainers use (rank, world size, gradient all-reduce, all-gather
// of sharded parameters, barrier),
// backed by a c10d process group over a TCPStore: Gloo on CPU, NCCL on CUDA.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace posttrain {

class Distributed {
 public:
  virtual ~Distributed() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  // Sums every tensor in place across ranks. Tensors are packed into flat buckets of about
  // bucket_bytes so a model costs a few collectives, not one per parameter.
  virtual void all_reduce_sum(const std::vector<at::Tensor>& tensors) = 0;
  // Every rank's `local` (1-D, the same length on every rank) laid end to end in rank order into
  // `global` (1-D, world_size x that length), on every rank.
  virtual void all_gather(const at::Tensor& local, const at::Tensor& global) = 0;
  virtual void barrier() = 0;
  double all_reduce_sum(double value);
};

// World of one: every collective is the identity.
std::unique_ptr<Distributed> make_single_process();

// The world size the environment announces (torchrun's WORLD_SIZE, or Slurm's SLURM_NTASKS when
// MASTER_ADDR is set), 1 when it announces none. Known before the process group forms.
int launched_world_size();

// Reads the torchrun contract (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Slurm's
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR / MASTER_PORT still required) and joins
// the process group: NCCL when `device` is CUDA and NCCL is built in, Gloo otherwise. Without those
// variables (or with WORLD_SIZE=1) it returns make_single_process(). UserError on a bad environment.
std::unique_ptr<Distributed> init_distributed_from_env(const std::string& device);

}  // namespace posttrain
