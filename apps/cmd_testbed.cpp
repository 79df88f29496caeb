// posttrain testbed --seed S --out DIR: writes the gold-preference testbed (datasets/testbed.h):
// a mixed-behaviour corpus, SFT demonstrations, gold-labelled preference pairs (with optional label
// noise and length bias), RL prompts and held-out eval sets, plus testbed.json with their sha256.
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "datasets/testbed.h"

namespace posttrain::cli {

int testbed(const std::vector<std::string>& args) {
  po::options_description options("testbed options");
  TestbedOptions o;
  std::string out;
  options.add_options()("out", po::value(&out)->required(), "output folder")(
      "seed", po::value(&o.seed)->default_value(0), "world seed (same seed -> byte-identical files)")(
      "corpus-documents", po::value(&o.corpus_documents)->default_value(o.corpus_documents), "base corpus size")(
      "sft-examples", po::value(&o.sft_examples)->default_value(o.sft_examples), "SFT demonstrations")(
      "pairs", po::value(&o.pairs)->default_value(o.pairs), "preference pairs")(
      "rl-prompts", po::value(&o.rl_prompts)->default_value(o.rl_prompts), "RL prompts")(
      "eval-items", po::value(&o.eval_items)->default_value(o.eval_items), "held-out eval items")(
      "label-noise", po::value(&o.label_noise)->default_value(o.label_noise), "probability a pair label is flipped")(
      "length-bias", po::value(&o.length_bias)->default_value(o.length_bias),
      "probability the labeller prefers the longer response instead of the gold one");
  po::variables_map vm;
  if (!parse("testbed", "--out DIR [--seed S] [--label-noise P] [--length-bias P]", options, args, vm)) return 0;
  for (int64_t n : {o.corpus_documents, o.sft_examples, o.pairs, o.rl_prompts, o.eval_items})
    if (n <= 0) throw UserError("testbed: every count must be positive");
  const auto manifest = write_testbed(o, out);
  std::cout << manifest.dump(2) << "\n";
  return 0;
}

}  // namespace posttrain::cli
