// posttrain testbed --seed S --out DIR: writes the gold-preference testbed (datasets/testbed.h):
// a mixed-behaviour corpus, SFT demonstrations, gold-labelled preference pairs (with optional label
// noise and length bias), RL prompts and held-out eval sets, plus testbed.json with their sha256,
// and tokenizer/: the Qwen3 tokenizer trimmed to the tokens the testbed's texts use (models/tokenizer_trim.h).
#include <filesystem>
#include <fstream>
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "datasets/sft_data.h"
#include "datasets/testbed.h"
#include "models/tokenizer_trim.h"
#include "trainers/constitution.h"

namespace posttrain::cli {

namespace {

// Every string value in every JSONL file the testbed wrote, and the pieces the chat format adds.
std::vector<std::string> testbed_texts(const std::string& dir) {
  std::vector<std::string> texts = {"user\n", "assistant\n", "system\n", "\n", " (A)", " (B)"};
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    for (std::string line; std::getline(in, line);)
      if (!line.empty())
        for (auto& text : json_string_values(nlohmann::json::parse(line))) texts.push_back(std::move(text));
  }
  return texts;
}

// The constitution's requests and judge question as constitutional AI renders them.
void add_constitution_texts(const std::string& path, std::vector<std::string>& texts) {
  const Constitution constitution = load_constitution(path);
  for (const auto& p : constitution.principles) {
    for (const auto& m : revision_messages("Q?", "A.", "C.", p)) texts.push_back(m.content);
    texts.push_back(comparison_prompt("Q?", "A.", "B.", p));
  }
}

}  // namespace

int testbed(const std::vector<std::string>& args) {
  po::options_description options("testbed options");
  TestbedOptions o;
  std::string out, tokenizer_dir, constitution;
  options.add_options()("out", po::value(&out)->required(), "output folder")(
      "seed", po::value(&o.seed)->default_value(0), "world seed (same seed -> byte-identical files)")(
      "corpus-documents", po::value(&o.corpus_documents)->default_value(o.corpus_documents), "base corpus size")(
      "sft-examples", po::value(&o.sft_examples)->default_value(o.sft_examples), "SFT demonstrations")(
      "pairs", po::value(&o.pairs)->default_value(o.pairs), "preference pairs")(
      "rl-prompts", po::value(&o.rl_prompts)->default_value(o.rl_prompts), "RL prompts")(
      "eval-items", po::value(&o.eval_items)->default_value(o.eval_items), "held-out eval items")(
      "label-noise", po::value(&o.label_noise)->default_value(o.label_noise), "probability a pair label is flipped")(
      "length-bias", po::value(&o.length_bias)->default_value(o.length_bias),
      "probability the labeller prefers the longer response instead of the gold one")(
      "hedge", po::value(&o.hedge)->default_value(o.hedge),
      "> 0: the corpus never refuses a harmful request; it hedges (a refusal opening, then the help) with "
      "this probability and complies otherwise (a base with headroom on refusal evals)")(
      "tokenizer", po::value(&tokenizer_dir)->default_value(default_tokenizer_dir()),
      "the full Qwen3 tokenizer folder, trimmed into <out>/tokenizer")(
      "constitution", po::value(&constitution)->default_value(""),
      "a constitution (YAML) whose requests the trimmed tokenizer must also cover exactly");
  po::variables_map vm;
  if (!parse("testbed", "--out DIR [--seed S] [--label-noise P] [--length-bias P]", options, args, vm)) return 0;
  for (int64_t n : {o.corpus_documents, o.sft_examples, o.pairs, o.rl_prompts, o.eval_items})
    if (n <= 0) throw UserError("testbed: every count must be positive");
  auto manifest = write_testbed(o, out);
  std::vector<std::string> texts = testbed_texts(out);
  if (!constitution.empty()) add_constitution_texts(constitution, texts);
  const TrimmedTokenizer trimmed = trim_tokenizer(tokenizer_dir, texts);
  write_trimmed_tokenizer(trimmed, tokenizer_dir, out + "/tokenizer");
  manifest["tokenizer"] = {{"dir", out + "/tokenizer"}, {"vocab_size", trimmed.original_ids.size()}};
  std::cout << manifest.dump(2) << "\n";
  return 0;
}

}  // namespace posttrain::cli
