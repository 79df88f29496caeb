// posttrain generate: {"ids": [new ids...], "text": "..."} as one JSON line.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "core/error.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/generate.h"
#include "models/tokenizer.h"

namespace posttrain::cli {

int generate(const std::vector<std::string>& args) {
  po::options_description options("generate options");
  std::string model_dir, ids_text, prompt, device, dtype;
  GenerationOptions gen;
  options.add_options()("model", po::value(&model_dir)->required(), "HF model folder")(
      "ids", po::value(&ids_text), "prompt as comma-separated token ids")("prompt", po::value(&prompt), "prompt text")(
      "chat", po::bool_switch(), "wrap --prompt as a user turn in Qwen's chat format + assistant prompt")(
      "max-new-tokens", po::value(&gen.max_new_tokens)->default_value(64), "stop after this many new tokens")(
      "temperature", po::value(&gen.temperature)->default_value(0.0), "0 = greedy; > 0 samples")(
      "top-k", po::value(&gen.top_k)->default_value(0), "sample among the k most likely tokens (0 = all)")(
      "top-p", po::value(&gen.top_p)->default_value(1.0), "nucleus sampling mass (1 = off)")(
      "seed", po::value(&gen.seed)->default_value(0), "sampling seed (same seed -> same output)")(
      "device", po::value(&device)->default_value("cpu"), "cpu or cuda")(
      "dtype", po::value(&dtype)->default_value("float32"), "compute dtype: float32, bfloat16, float16");
  po::variables_map vm;
  if (!parse("generate",
             "--model DIR (--ids 1,2,3 | --prompt TEXT [--chat]) [--max-new-tokens N] [--temperature T --top-k K "
             "--top-p P --seed S]",
             options, args, vm))
    return 0;
  if (vm.count("ids") == vm.count("prompt"))
    throw UserError("posttrain generate: give exactly one of --ids or --prompt");
  if (vm["chat"].as<bool>() && !vm.count("prompt")) throw UserError("posttrain generate: --chat needs --prompt");
  if (gen.temperature < 0) throw UserError("--temperature must be >= 0");

  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);
  std::vector<int32_t> ids;
  if (vm.count("ids")) {
    ids = parse_id_list(ids_text, "--ids");
  } else if (vm["chat"].as<bool>()) {
    ids = render_chat(tokenizer, std::vector<ChatMessage>{{"user", prompt}}, /*add_generation_prompt=*/true).ids;
  } else {
    ids = tokenizer.encode(prompt);
  }
  gen.stop_ids = {tokenizer.eos_id()};
  if (auto endoftext = tokenizer.token_to_id("<|endoftext|>")) gen.stop_ids.push_back(*endoftext);
  gen.vocab_limit = tokenizer.id_count();  // never draw the embedding's unused rows

  auto model = load_model(model_dir, {parse_dtype(dtype, "--dtype"), parse_device(device)});
  if (model->is_classifier())
    throw UserError(model_dir + ": a reward model / classifier has no LM head (use posttrain score)");
  const GenerationOutput result = posttrain::generate(*model, {ids}, gen);
  const auto& new_ids = result.new_ids[0];
  std::vector<int32_t> text_ids = new_ids;
  if (result.stopped[0]) text_ids.pop_back();  // the stop token is reported in ids, not in text
  nlohmann::json out;
  out["ids"] = new_ids;
  out["text"] = sanitize_utf8(tokenizer.decode(text_ids));
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace posttrain::cli
