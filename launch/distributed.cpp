#include "launch/distributed.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>

#include "core/error.h"

namespace posttrain {

namespace {

constexpr int64_t kBucketBytes = 25ll << 20;  // like DDP's default bucket size

class SingleProcess : public Distributed {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  void all_reduce_sum(const std::vector<torch::Tensor>&) override {}
  void all_gather(const torch::Tensor& local, const torch::Tensor& global) override {
    TORCH_CHECK(global.numel() == local.numel(), "all_gather: global must be world_size x local");
    global.copy_(local);
  }
  void barrier() override {}
};

class ProcessGroupWorld : public Distributed {
 public:
  ProcessGroupWorld(c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank, int world, int local_rank)
      : group_(std::move(group)), rank_(rank), world_(world), local_rank_(local_rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int local_rank() const override { return local_rank_; }

  void all_reduce_sum(const std::vector<torch::Tensor>& tensors) override {
    // Pack same-dtype runs of tensors into flat buckets, reduce each bucket, unpack.
    size_t i = 0;
    while (i < tensors.size()) {
      std::vector<torch::Tensor> members;
      int64_t bytes = 0;
      const auto dtype = tensors[i].scalar_type();
      while (i < tensors.size() && tensors[i].scalar_type() == dtype && (members.empty() || bytes < kBucketBytes)) {
        members.push_back(tensors[i]);
        bytes += tensors[i].numel() * tensors[i].element_size();
        ++i;
      }
      std::vector<torch::Tensor> flat_views;
      for (const auto& t : members) flat_views.push_back(t.reshape({-1}));
      std::vector<torch::Tensor> bucket = {torch::cat(flat_views)};
      group_->allreduce(bucket)->wait();
      int64_t offset = 0;
      for (auto& t : members) {
        t.copy_(bucket[0].narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
    }
  }

  void all_gather(const torch::Tensor& local, const torch::Tensor& global) override {
    TORCH_CHECK(local.dim() == 1 && global.dim() == 1 && global.numel() == local.numel() * world_,
                "all_gather: 1-D tensors, global = world_size x local");
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int r = 0; r < world_; ++r) outputs[0].push_back(global.narrow(0, r * local.numel(), local.numel()));
    std::vector<torch::Tensor> inputs = {local.contiguous()};
    // Gloo writes into the output tensors it was given: narrowed views of `global`, so no copy back.
    group_->allgather(outputs, inputs)->wait();
  }

  void barrier() override { group_->barrier()->wait(); }

 private:
  // ProcessGroupGloo itself (a ProcessGroup in libtorch 1.x, a Backend in 2.x): same calls in both.
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_, world_, local_rank_;
};

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < 0)
    throw UserError(std::string("environment variable ") + name + "=\"" + value + "\" is not a non-negative integer");
  return static_cast<int>(parsed);
}

}  // namespace

double Distributed::all_reduce_sum(double value) {
  auto t = torch::tensor({value}, torch::kFloat64);
  all_reduce_sum(std::vector<torch::Tensor>{t});
  return t.item<double>();
}

int launched_world_size() {
  if (std::getenv("WORLD_SIZE") != nullptr) return std::max(1, env_int("WORLD_SIZE", 1));
  if (std::getenv("SLURM_NTASKS") != nullptr && std::getenv("MASTER_ADDR") != nullptr)
    return std::max(1, env_int("SLURM_NTASKS", 1));
  return 1;
}

std::unique_ptr<Distributed> make_single_process() { return std::make_unique<SingleProcess>(); }

std::unique_ptr<Distributed> init_distributed_from_env(const std::string& device) {
  // torchrun / posttrain launch first, then Slurm's srun.
  const int world = launched_world_size();
  if (world <= 1) return make_single_process();
  const bool torchrun = std::getenv("WORLD_SIZE") != nullptr;
  const int rank = torchrun ? env_int("RANK", -1) : env_int("SLURM_PROCID", -1);
  const int local_rank = torchrun ? env_int("LOCAL_RANK", 0) : env_int("SLURM_LOCALID", 0);
  if (rank < 0 || rank >= world)
    throw UserError("RANK must be set to 0.." + std::to_string(world - 1) +
                    " when WORLD_SIZE=" + std::to_string(world));
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr) throw UserError("MASTER_ADDR must be set for a distributed run");
  const int port = env_int("MASTER_PORT", 29500);
  if (port <= 0 || port > 65535) throw UserError("MASTER_PORT must be a TCP port");

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(port);
  store_options.isServer = rank == 0;
  store_options.numWorkers = static_cast<size_t>(world);
  store_options.timeout = std::chrono::milliseconds(env_int("POSTTRAIN_DIST_TIMEOUT_S", 300) * 1000);
  auto store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), store_options);

  if (device.rfind("cuda", 0) == 0)
    throw UserError("train.device=" + device +
                    " with several processes needs a CUDA build with NCCL; this build has Gloo (CPU) only");
  auto options = c10d::ProcessGroupGloo::Options::create(store_options.timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (std::string(addr) == "127.0.0.1" || std::string(addr) == "localhost") {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
  return std::make_unique<ProcessGroupWorld>(group, rank, world, local_rank);
}

}  // namespace posttrain
