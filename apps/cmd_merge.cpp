// posttrain merge: fold a LoRA adapter folder into its base and write a plain HF model folder.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "models/checkpoint.h"
#include "models/lora.h"

namespace fs = std::filesystem;

namespace posttrain::cli {

int merge(const std::vector<std::string>& args) {
  po::options_description options("merge options");
  std::string base_dir, adapter_dir, out_dir, dtype;
  options.add_options()("adapter", po::value(&adapter_dir)->required(),
                        "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")(
      "base", po::value(&base_dir),
      "the base model folder (default: the adapter's base_model_name_or_path, relative to the adapter)")(
      "out", po::value(&out_dir)->required(), "the HF model folder to write (must not exist)")(
      "dtype", po::value(&dtype)->default_value("float32"), "storage dtype: float32, bfloat16, float16");
  po::variables_map vm;
  if (!parse("merge", "--adapter DIR [--base DIR] --out DIR", options, args, vm)) return 0;
  if (!is_adapter_dir(adapter_dir)) fail(adapter_dir, "not an adapter folder (no adapter_config.json)");
  if (fs::exists(out_dir)) fail(out_dir, "output folder already exists; choose a new one or remove it");
  const auto storage = parse_dtype(dtype, "--dtype");

  LoadOptions load;  // merged in float32 (load_model folds the adapters in), stored in --dtype
  load.adapter_base = base_dir;
  auto model = load_model(adapter_dir, load);
  SaveOptions save;
  save.dtype = storage;
  // The tokenizer the adapter was saved with (its base's); else the base's own.
  const std::string base =
      base_dir.empty() ? adapter_base_dir(adapter_dir, read_adapter_config(adapter_dir)) : base_dir;
  if (fs::exists(fs::path(adapter_dir) / "tokenizer.json"))
    save.tokenizer_dir = adapter_dir;
  else if (fs::exists(fs::path(base) / "tokenizer.json"))
    save.tokenizer_dir = base;
  save_model(*model, out_dir, save);
  std::cout << "merged " << adapter_dir << " into " << base << " -> " << out_dir << "\n";
  return 0;
}

}  // namespace posttrain::cli
