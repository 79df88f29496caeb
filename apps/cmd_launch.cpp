// posttrain launch: start N workers of `posttrain run` torchrun-style (see launch/launcher.h).
#include "apps/cli.h"
#include "launch/launcher.h"

namespace posttrain::cli {

int launch(const std::vector<std::string>& args) {
  po::options_description options("launch options");
  LaunchOptions o;
  std::string recipe;
  std::vector<std::string> overrides;
  options.add_options()("nproc-per-node", po::value(&o.nproc_per_node)->default_value(1),
                        "worker processes on this node")("nnodes", po::value(&o.nnodes)->default_value(1),
                                                         "number of nodes")(
      "node-rank", po::value(&o.node_rank)->default_value(0), "this node's index, 0..nnodes-1")(
      "master-addr", po::value(&o.master_addr)->default_value("127.0.0.1"), "address of the node running rank 0")(
      "master-port", po::value(&o.master_port)->default_value(29500), "TCP port of the rendezvous store on the master")(
      "max-restarts", po::value(&o.max_restarts)->default_value(0),
      "restart the group this many times after a failure")(
      "stall-timeout", po::value(&o.stall_timeout_s)->default_value(60),
      "end the job when a worker stays stopped (SIGSTOP) this many seconds")("recipe", po::value(&recipe)->required(),
                                                                             "recipe YAML file")(
      "override", po::value(&overrides)->multitoken(), "key.sub=value settings (positional after the recipe)")(
      "resume-with-changes", po::bool_switch(), "as for posttrain run: resume although the settings differ");
  po::positional_options_description positional;
  positional.add("recipe", 1).add("override", -1);
  po::variables_map vm;
  if (!parse("launch",
             "--nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P --max-restarts K "
             "--stall-timeout S] "
             "RECIPE.yaml [key.sub=value ...]",
             options, args, vm, &positional))
    return 0;
  o.worker_args = {"run", recipe};
  o.worker_args.insert(o.worker_args.end(), overrides.begin(), overrides.end());
  if (vm["resume-with-changes"].as<bool>()) o.worker_args.push_back("--resume-with-changes");
  return launch_workers(o);
}

}  // namespace posttrain::cli
