// configure_cpu_threads: OMP_NUM_THREADS wins, else the CPUs are shared between the node's ranks, and
// a pthreads OpenBLAS leaves libtorch one thread.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "launch/cpu_threads.h"

namespace {

// Sets or unsets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace

TEST_CASE("CPU threads follow OMP_NUM_THREADS, else the CPUs per local rank", "[launch][threads]") {
  const int before = torch::get_num_threads();
  {
    ScopedEnv omp("OMP_NUM_THREADS", "3");
    const auto t = posttrain::configure_cpu_threads();
    INFO("BLAS build " << t.blas);
    if (t.blas == "openblas-pthreads") {
      CHECK(t.threads == 1);  // libtorch stays off the BLAS's cores
      CHECK(t.blas_threads == 3);
    } else {
      CHECK(t.threads == 3);
    }
    CHECK(torch::get_num_threads() == t.threads);
    CHECK(posttrain::configured_cpu_threads().threads == t.threads);
  }
  {
    ScopedEnv omp("OMP_NUM_THREADS", nullptr);
    ScopedEnv ranks("LOCAL_WORLD_SIZE", "100000");  // more ranks than CPUs: still one thread each
    const auto t = posttrain::configure_cpu_threads();
    CHECK(t.threads == 1);
    CHECK(t.blas_threads == 1);
  }
  torch::set_num_threads(before);
}
