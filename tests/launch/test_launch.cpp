// Real processes on loopback: 2 ranks == 1 rank, 2 "nodes" == 1 rank, Slurm-style workers, a killed
// worker brings the launcher down naming its rank, and --max-restarts resumes to the same weights.
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "models/checkpoint.h"
#include "tests/test_util.h"
#include "tests/weights_util.h"

namespace {

// A port per test process and call, so parallel ctest jobs do not collide.
int next_port() {
  static int offset = 0;
  return 20000 + (static_cast<int>(::getpid()) * 7 + offset++ * 13) % 20000;
}

std::string env_prefix() { return "POSTTRAIN_CACHE=" + test::test_cache_dir() + " "; }

std::string recipe_args(const std::string& run_dir, int steps = 4) {
  return test::source_dir() + "/recipes/quickstart/sft.yaml output_dir=" + run_dir +
         " train.steps=" + std::to_string(steps) + " train.batch_size=4 train.micro_batch_size=2 checkpoint.every=2";
}

// The single-process reference run, built once.
const std::string& reference_run() {
  static test::TempDir tmp("launch-ref");
  static const std::string dir = [] {
    auto r = test::run(env_prefix() + test::posttrain_bin() + " run " + recipe_args(tmp / "one"));
    if (r.exit_code != 0) FAIL("reference run failed: " << r.output);
    return tmp / "one";
  }();
  return dir;
}

void expect_same_as_reference(const std::string& run_dir) {
  auto got = test::run_losses(run_dir), want = test::run_losses(reference_run());
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-5));
  CHECK(test::relative_weight_difference(run_dir + "/final", reference_run() + "/final") < 1e-3);
}

pid_t spawn(const std::string& command) {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec env " + command).c_str(),
          static_cast<char*>(nullptr));  // env: VAR=x prefixes, no extra shell process
    _exit(127);
  }
  return pid;
}

// The pid of the launcher's child whose environment says RANK=rank, or -1 if none (yet).
pid_t find_worker(pid_t launcher, int rank) {
  for (const auto& entry : test::fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string pid_s, comm, state;
    pid_t ppid = 0;
    stat >> pid_s >> comm >> state >> ppid;
    if (ppid != launcher) continue;
    const std::string environ = test::read_text((entry.path() / "environ").string());
    if (environ.find('\0' + std::string("RANK=") + std::to_string(rank) + '\0') != std::string::npos ||
        environ.rfind("RANK=" + std::to_string(rank) + '\0', 0) == 0)
      return std::stoi(name);
  }
  return -1;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("2 workers give the same losses and weights as 1 worker with the same global batch",
          "[launch][distributed]") {
  test::TempDir tmp("launch-2");
  auto r = test::run(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --master-port " +
                     std::to_string(next_port()) + " " + recipe_args(tmp / "two"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("[rank 1] ") != std::string::npos);
  CHECK(nlohmann::json::parse(test::read_text(tmp / "two/manifest.json"))["world_size"] == 2);
  CHECK(test::fs::exists(tmp / "two/logs/rank-1.log"));
  expect_same_as_reference(tmp / "two");
}

TEST_CASE("train.zero: 1 on 2 ranks: half the AdamW state each, the same weights, shards that resume and re-shard",
          "[launch][distributed][zero]") {
  test::TempDir tmp("launch-zero");
  const std::string launch = env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --master-port ";
  auto plain = test::run(launch + std::to_string(next_port()) + " " + recipe_args(tmp / "plain"));
  REQUIRE(plain.exit_code == 0);
  auto zero = test::run(launch + std::to_string(next_port()) + " " + recipe_args(tmp / "zero") + " train.zero=1");
  INFO(zero.output);
  REQUIRE(zero.exit_code == 0);
  // Sharding moves only where the update is computed: the weights equal the unsharded run's.
  auto a = posttrain::load_model(tmp / "zero/final"), b = posttrain::load_model(tmp / "plain/final");
  auto pb = b->named_parameters();
  double largest = 0;
  for (const auto& item : a->named_parameters())
    largest = std::max(largest, (item.value() - pb[item.key()]).abs().max().item<double>());
  CHECK(largest <= 1e-5);
  expect_same_as_reference(tmp / "zero");  // and 2 ranks == 1 rank, as without sharding

  // Each rank's state is its half of all parameters' moments (the last shard may be shorter).
  int64_t total = 0;
  for (const auto& p : a->parameters()) total += p.numel();
  const auto manifest = nlohmann::json::parse(test::read_text(tmp / "zero/manifest.json"));
  CHECK(manifest["optimizer_shard"]["of"] == total);
  CHECK(manifest["optimizer_shard"]["elements"] == (total + 1) / 2);
  const std::string checkpoint = tmp / "zero/checkpoints/step-000004";
  CHECK_FALSE(test::fs::exists(checkpoint + "/optimizer.safetensors"));
  const auto index = nlohmann::json::parse(test::read_text(checkpoint + "/optimizer.index.json"));
  REQUIRE(index["shards"].size() == 2);
  int64_t covered = 0;
  for (int rank = 0; rank < 2; ++rank) {
    const auto& shard = index["shards"][rank];
    const auto tensors = posttrain::read_safetensors(checkpoint + "/" + shard["file"].get<std::string>());
    CHECK(tensors.at("exp_avg").numel() == shard["length"].get<int64_t>());
    CHECK(tensors.at("exp_avg_sq").numel() == shard["length"].get<int64_t>());
    CHECK(shard["length"].get<int64_t>() == (rank == 0 ? (total + 1) / 2 : total - (total + 1) / 2));
    covered += shard["length"].get<int64_t>();
  }
  CHECK(covered == total);

  // The step-2 shards resumed by 1 rank (a world of one keeps the state whole): re-sharded on load.
  const std::string whole = test::read_text(tmp / "zero/final/model.safetensors");
  test::fs::copy(tmp / "zero/final", tmp / "whole", test::fs::copy_options::recursive);
  const auto rewind = [&] {
    test::fs::remove_all(tmp / "zero/final");
    test::fs::remove_all(tmp / "zero/checkpoints/step-000004");
  };
  rewind();
  auto one = test::run(env_prefix() + test::posttrain_bin() + " run " + recipe_args(tmp / "zero") + " train.zero=1");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  CHECK(one.output.find("resumed from") != std::string::npos);
  CHECK(test::relative_weight_difference(tmp / "zero/final", tmp / "whole") < 1e-3);
  CHECK(test::fs::exists(tmp / "zero/checkpoints/step-000004/optimizer.safetensors"));  // written whole
  // Resumed from the same shards on 2 ranks: bit-identical to the uninterrupted run.
  rewind();
  auto resumed = test::run(launch + std::to_string(next_port()) + " " + recipe_args(tmp / "zero") + " train.zero=1");
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(tmp / "zero/final/model.safetensors") == whole);
}

TEST_CASE("zero: 2 is refused on Gloo with one line", "[launch][zero]") {
  test::TempDir tmp("zero-2");
  auto r = test::run(env_prefix() + test::posttrain_bin() + " run " + recipe_args(tmp / "x") + " train.zero=2");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("train.zero 2 (gradients reduce-scattered) needs a backend with reduce-scatter") !=
        std::string::npos);
}

TEST_CASE("2 nodes x 1 process via --nnodes/--node-rank equal 1 worker", "[launch][distributed]") {
  test::TempDir tmp("launch-nodes");
  const std::string port = std::to_string(next_port());
  auto node = [&](int rank) {
    return env_prefix() + test::posttrain_bin() + " launch --nnodes 2 --nproc-per-node 1 --node-rank " +
           std::to_string(rank) + " --master-addr 127.0.0.1 --master-port " + port + " " + recipe_args(tmp / "nodes") +
           " > " + tmp / ("node" + std::to_string(rank) + ".log") + " 2>&1";
  };
  pid_t node1 = spawn(node(1));
  pid_t node0 = spawn(node(0));
  CHECK(wait_exit_code(node0) == 0);
  CHECK(wait_exit_code(node1) == 0);
  expect_same_as_reference(tmp / "nodes");
}

TEST_CASE("workers started Slurm-style (SLURM_PROCID, SLURM_NTASKS) form the same group", "[launch][distributed]") {
  test::TempDir tmp("launch-slurm");
  const std::string port = std::to_string(next_port());
  auto worker = [&](int rank) {
    return "SLURM_PROCID=" + std::to_string(rank) + " SLURM_NTASKS=2 SLURM_LOCALID=" + std::to_string(rank) +
           " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " + env_prefix() + test::posttrain_bin() + " run " +
           recipe_args(tmp / "slurm") + " > " + tmp / ("w" + std::to_string(rank) + ".log") + " 2>&1";
  };
  pid_t w1 = spawn(worker(1));
  pid_t w0 = spawn(worker(0));
  CHECK(wait_exit_code(w0) == 0);
  CHECK(wait_exit_code(w1) == 0);
  CHECK(nlohmann::json::parse(test::read_text(tmp / "slurm/manifest.json"))["world_size"] == 2);
  expect_same_as_reference(tmp / "slurm");
}

TEST_CASE("a killed worker stops the launcher naming its rank, and --max-restarts resumes to the same weights",
          "[launch][distributed]") {
  test::TempDir tmp("launch-kill");
  // Uninterrupted 2-worker run of 8 steps, the reference for the restarted one.
  auto whole = test::run(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --master-port " +
                         std::to_string(next_port()) + " " + recipe_args(tmp / "whole", 8));
  REQUIRE(whole.exit_code == 0);

  for (int restarts : {0, 1}) {
    const std::string run_dir = tmp / ("killed" + std::to_string(restarts));
    const std::string log = tmp / ("launcher" + std::to_string(restarts) + ".log");
    pid_t launcher = spawn(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --max-restarts " +
                           std::to_string(restarts) + " --master-port " + std::to_string(next_port()) + " " +
                           recipe_args(run_dir, 8) + " > " + log + " 2>&1");
    // Once the step-2 checkpoint is complete, SIGKILL the worker whose environment says RANK=1.
    bool killed = false;
    for (int i = 0; i < 4000 && !killed; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (!test::fs::exists(run_dir + "/checkpoints/step-000002/trainer_state.json")) continue;
      const pid_t worker = find_worker(launcher, 1);
      if (worker > 0) killed = kill(worker, SIGKILL) == 0;
    }
    REQUIRE(killed);
    const int code = wait_exit_code(launcher);
    const std::string output = test::read_text(log);
    INFO(output);
    CHECK(output.find("worker rank 1") != std::string::npos);
    CHECK(output.find("killed by signal 9") != std::string::npos);
    if (restarts == 0) {
      CHECK(code != 0);
      CHECK_FALSE(test::fs::exists(run_dir + "/final"));
    } else {
      CHECK(code == 0);
      CHECK(output.find("restarting the workers") != std::string::npos);
      CHECK(output.find("resumed from") != std::string::npos);
      CHECK(test::read_text(run_dir + "/final/model.safetensors") ==
            test::read_text(tmp / "whole/final/model.safetensors"));
    }
  }
}

TEST_CASE("a worker stopped with SIGSTOP ends the job after --stall-timeout, naming its rank",
          "[launch][distributed]") {
  test::TempDir tmp("launch-stop");
  const std::string log = tmp / "launcher.log";
  pid_t launcher =
      spawn(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --stall-timeout 2 " + "--master-port " +
            std::to_string(next_port()) + " " + recipe_args(tmp / "run", 40) + " > " + log + " 2>&1");
  bool stopped = false;
  for (int i = 0; i < 4000 && !stopped; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!test::fs::exists(tmp / "run/manifest.json")) continue;  // training has started
    const pid_t worker = find_worker(launcher, 1);
    if (worker > 0) stopped = kill(worker, SIGSTOP) == 0;
  }
  REQUIRE(stopped);
  // Without the stall check the job would wait in a collective for the c10d timeout (300 s).
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    ended = waitpid(launcher, &status, WNOHANG) == launcher;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!ended) kill(-launcher, SIGKILL);
  const std::string output = test::read_text(log);
  INFO(output);
  REQUIRE(ended);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) != 0));
  CHECK(output.find("worker rank 1 (pid ") != std::string::npos);
  CHECK(output.find("has been stopped by signal 19") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
}

TEST_CASE("launch rejects impossible settings", "[launch]") {
  auto r = test::run(test::posttrain_bin() + " launch --nnodes 2 --node-rank 2 x.yaml");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--node-rank must be in 0..1") != std::string::npos);
  test::TempDir tmp("launch-bad");
  auto odd = test::run(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 3 --master-port " +
                       std::to_string(next_port()) + " " + recipe_args(tmp / "odd"));
  CHECK(odd.exit_code != 0);
  CHECK(odd.output.find("multiple of world_size (3)") != std::string::npos);
}

TEST_CASE("4 micro-steps x 2 ranks equal one batch of 8 in one micro-step (SFT tokens, DPO pairs)",
          "[launch][distributed]") {
  test::TempDir tmp("launch-accumulate");
  for (const char* method : {"sft", "dpo"}) {
    INFO(method);
    const std::string recipe = test::source_dir() + "/recipes/quickstart/" + method + ".yaml train.steps=3 " +
                               "train.batch_size=8 checkpoint.every=0 output_dir=" + tmp / method;
    auto big = test::run(env_prefix() + test::posttrain_bin() + " run " + recipe + "-big train.micro_batch_size=8");
    REQUIRE(big.exit_code == 0);
    auto split = test::run(env_prefix() + test::posttrain_bin() + " launch --nproc-per-node 2 --master-port " +
                           std::to_string(next_port()) + " " + recipe + "-split train.micro_batch_size=1");
    INFO(split.output);
    REQUIRE(split.exit_code == 0);
    const auto a = test::run_losses(tmp / method + "-big"), b = test::run_losses(tmp / method + "-split");
    REQUIRE(a.size() == 3);
    REQUIRE(b.size() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(b[i] == Approx(a[i]).epsilon(1e-5));
    CHECK(test::relative_weight_difference(tmp / method + "-big/final", tmp / method + "-split/final") < 1e-3);
  }
}
