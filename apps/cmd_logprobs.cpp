// posttrain logprobs: {"logprobs": [log p(ids[t] | ids[<t]) for t = 1..n-1]} as one JSON line.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "core/error.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/tokenizer.h"

namespace posttrain::cli {

int logprobs(const std::vector<std::string>& args) {
  po::options_description options("logprobs options");
  std::string model_dir, ids_text, text, device, dtype;
  options.add_options()("model", po::value(&model_dir)->required(), "HF model folder")(
      "ids", po::value(&ids_text), "comma-separated token ids, e.g. 1,2,3")(
      "text", po::value(&text), "text to tokenize with the model's tokenizer (no special tokens added)")(
      "device", po::value(&device)->default_value("cpu"), "cpu or cuda")(
      "dtype", po::value(&dtype)->default_value("float32"), "compute dtype: float32, bfloat16, float16");
  po::variables_map vm;
  if (!parse("logprobs", "--model DIR (--ids 1,2,3 | --text TEXT)", options, args, vm)) return 0;
  if (vm.count("ids") == vm.count("text")) throw UserError("posttrain logprobs: give exactly one of --ids or --text");

  std::vector<int64_t> ids;
  if (vm.count("ids")) {
    for (int32_t id : parse_id_list(ids_text, "--ids")) ids.push_back(id);
  } else {
    for (int32_t id : Tokenizer::from_dir(model_dir).encode(text)) ids.push_back(id);
  }
  auto model = load_model(model_dir, {parse_dtype(dtype, "--dtype"), parse_device(device)});
  if (model->is_classifier())
    throw UserError(model_dir + ": a reward model / classifier has no LM head (use posttrain score)");
  for (int64_t id : ids)
    if (id >= model->config.vocab_size)
      throw UserError("--ids: token id " + std::to_string(id) + " is outside the model's vocabulary (" +
                      std::to_string(model->config.vocab_size) + ")");
  const std::vector<double> values = sequence_logprobs(*model, ids);
  nlohmann::json out;
  out["logprobs"] = values;
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace posttrain::cli
