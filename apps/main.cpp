// posttrain: post-training for Qwen models. Each subcommand parses its flags and calls the libraries.
#include <c10/util/Exception.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "launch/cpu_threads.h"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  std::function<int(const std::vector<std::string>&)> run;
};

const std::vector<Subcommand>& subcommands() {
  using namespace posttrain::cli;
  static const std::vector<Subcommand> table = {
      {"init-base", "write a randomly initialised Qwen base model (a preset shape) with the Qwen3 tokenizer",
       init_base},
      {"logprobs", "print per-token log-probabilities of a token sequence under a model", logprobs},
      {"merge", "fold a LoRA adapter folder (PEFT format) into its base: a plain HF model folder", merge},
      {"variants",
       "run a variant matrix (same base, data, seed, budget; different methods), check the controls, report", variants},
      {"report", "compare runs (or a matrix's variants): report.md and a self-contained report.html", report},
      {"testbed", "write the gold-preference testbed (corpus, SFT, gold-labelled pairs, RL prompts, held-out evals)",
       testbed},
      {"redteam", "attack eval suites (canned, best-of-n, prefix search) from a policy: which suites are HACKED",
       redteam},
      {"hackathon",
       "eval hackathons: an event with sealed items, submissions in a ledger, a replaying judge, the board", hackathon},
      {"theory", "register, reveal, review and score theories: predictions about variants, in a hash-chained ledger",
       theory},
      {"eval", "run eval suites (robustness, audit, contamination) on a model folder, as recipe hooks do", eval},
      {"generate", "generate a continuation (greedy or sampled) from a prompt", generate},
      {"prepare-data", "tokenize a recipe's data into its HDF5 shard (run does this on first use)", prepare_data},
      {"run", "train one recipe (YAML) in this process: posttrain run RECIPE.yaml [key.sub=value ...]", run},
      {"launch", "run a recipe on N worker processes (torchrun-style; Gloo on CPU)", launch},
      {"methods", "list the registered training methods (and those of --plugin libraries)", methods},
      {"score", "score prompt/response JSONL with a reward model or a reward function (one JSON line per record)",
       score},
      {"tokenize", "encode JSONL {\"text\"} lines to {\"ids\"} (or --decode the reverse)", tokenize},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "usage: posttrain <command> [options]   (posttrain <command> --help for details)\n\ncommands:\n";
  for (const auto& c : subcommands())
    out << "  " << c.name << std::string(14 - std::strlen(c.name), ' ') << c.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  posttrain::keep_large_allocations_on_heap();
  posttrain::configure_cpu_threads();
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? posttrain::kExitUserError : 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& command : subcommands()) {
    if (name != command.name) continue;
    try {
      return command.run(args);
    } catch (const posttrain::UserError& e) {
      std::cerr << "posttrain: error: " << e.what() << "\n";
      return posttrain::kExitUserError;
    } catch (const std::filesystem::filesystem_error& e) {
      // A path the user chose that cannot be used (a file where a folder must go, a read-only or
      // full disk, /proc): their input, not our bug. what() names the operation, cause and path.
      std::cerr << "posttrain: error: " << e.what() << "\n";
      return posttrain::kExitUserError;
    } catch (const c10::Error& e) {
      std::cerr << "posttrain: internal error (libtorch): " << e.what_without_backtrace() << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "posttrain: internal error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "posttrain: error: unknown command \"" << name << "\"\n";
  print_usage(std::cerr);
  return posttrain::kExitUserError;
}
