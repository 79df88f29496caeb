#include "models/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "models/lora.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// Read-only memory map of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      fail(path, "cannot stat");
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail(path, "is a folder, expected a file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data_ == MAP_FAILED) {
        ::close(fd);
        fail(path, std::string("cannot mmap (") + std::strerror(errno) + ")");
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_ != nullptr && data_ != MAP_FAILED) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

torch::ScalarType to_torch(StDtype dtype) {
  switch (dtype) {
    case StDtype::F64:
      return torch::kFloat64;
    case StDtype::F32:
      return torch::kFloat32;
    case StDtype::F16:
      return torch::kFloat16;
    case StDtype::BF16:
      return torch::kBFloat16;
    case StDtype::I64:
      return torch::kInt64;
    case StDtype::I32:
      return torch::kInt32;
    case StDtype::I16:
      return torch::kInt16;
    case StDtype::I8:
      return torch::kInt8;
    case StDtype::U8:
      return torch::kUInt8;
    case StDtype::BOOL:
      return torch::kBool;
  }
  return torch::kFloat32;
}

StDtype from_torch(torch::ScalarType dtype, const std::string& name) {
  switch (dtype) {
    case torch::kFloat64:
      return StDtype::F64;
    case torch::kFloat32:
      return StDtype::F32;
    case torch::kFloat16:
      return StDtype::F16;
    case torch::kBFloat16:
      return StDtype::BF16;
    case torch::kInt64:
      return StDtype::I64;
    case torch::kInt32:
      return StDtype::I32;
    case torch::kInt16:
      return StDtype::I16;
    case torch::kInt8:
      return StDtype::I8;
    case torch::kUInt8:
      return StDtype::U8;
    case torch::kBool:
      return StDtype::BOOL;
    default:
      throw std::runtime_error("tensor '" + name + "' has a dtype safetensors cannot store");
  }
}

std::string shape_string(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::map<std::string, torch::Tensor> read_safetensors(const std::string& path) {
  MappedFile file(path);
  StHeader header = parse_safetensors_header(file.data(), file.size(), path);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& info : header.tensors) {
    // from_blob borrows the mapping; clone() copies out before the file is unmapped.
    void* start = const_cast<uint8_t*>(file.data() + header.data_start + info.begin);
    tensors[info.name] =
        torch::from_blob(start, info.shape, torch::TensorOptions().dtype(to_torch(info.dtype))).clone();
  }
  return tensors;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<StTensorInfo> infos;
  std::vector<torch::Tensor> contiguous;
  for (const auto& [name, tensor] : tensors) {
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    infos.push_back({name, from_torch(t.scalar_type(), name), t.sizes().vec(), 0, 0});
    contiguous.push_back(t);
  }
  const std::string header = build_safetensors_header(infos, metadata);
  write_file_atomic(path, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : contiguous)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  });
}

std::vector<std::string> expected_parameter_names(QwenForCausalLMImpl& model) {
  std::vector<std::string> names;
  for (const auto& item : model.named_parameters()) names.push_back(item.key());
  return names;
}

namespace {

// An adapter folder: the base (a classifier when the adapter trained a score head), then the adapters.
QwenForCausalLM load_adapted_model(const std::string& dir, const LoadOptions& options) {
  const AdapterConfig adapter = read_adapter_config(dir);
  LoadOptions base_options = options;
  base_options.adapter_base.clear();
  if (adapter.classifier) {
    const std::string weights = (fs::path(dir) / "adapter_model.safetensors").string();
    const auto stored = fs::exists(weights) ? read_safetensors(weights) : std::map<std::string, torch::Tensor>{};
    const auto score = stored.find("base_model.model.score.weight");
    if (score == stored.end() || score->second.dim() != 2)
      fail(weights, "a SEQ_CLS adapter must hold the score head 'base_model.model.score.weight' [labels, hidden]");
    const int64_t labels = score->second.size(0);
    if (options.classifier_labels > 0 && options.classifier_labels != labels)
      fail(weights, "a classifier with " + std::to_string(labels) + " labels, expected " +
                        std::to_string(options.classifier_labels));
    base_options.classifier_labels = labels;
  }
  const std::string base = options.adapter_base.empty() ? adapter_base_dir(dir, adapter) : options.adapter_base;
  // A base that is itself an adapter folder (LoRA trained on a LoRA run's result) loads merged.
  static thread_local int depth = 0;
  if (depth >= 8) fail(dir, "adapter folders name each other as base more than 8 deep (a cycle?)");
  ++depth;
  QwenForCausalLM model{nullptr};
  try {
    base_options.keep_adapters = false;
    model = load_model(base, base_options);
  } catch (...) {
    --depth;
    throw;
  }
  --depth;
  add_lora(*model, adapter.lora, 0, base, adapter.rslora);
  load_adapter_weights(*model, dir);
  if (!options.keep_adapters) merge_lora(*model);
  return model;
}

}  // namespace

QwenForCausalLM load_model(const std::string& dir, const LoadOptions& options) {
  if (!fs::is_directory(dir)) fail(dir, "model folder not found");
  if (is_adapter_dir(dir)) return load_adapted_model(dir, options);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path)) fail(config_path, "missing config.json (is this a HF model folder?)");
  QwenConfig config = load_qwen_config(config_path);

  // name -> tensor, and name -> the file it came from (for error messages)
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> source;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    tensors = read_safetensors(single.string());
    for (const auto& item : tensors) source[item.first] = single.string();
  } else if (fs::exists(index_path)) {
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(read_file(index_path.string()));
    } catch (const nlohmann::json::exception& e) {
      fail(index_path.string(), std::string("not valid JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(index_path.string(), "missing \"weight_map\" object");
    std::map<std::string, std::set<std::string>> names_by_shard;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail(index_path.string(), "weight_map." + it.key() + " is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail(index_path.string(), "weight_map." + it.key() + " points outside the folder: " + shard);
      names_by_shard[shard].insert(it.key());
    }
    for (const auto& [shard, names] : names_by_shard) {
      const std::string shard_path = (fs::path(dir) / shard).string();
      auto shard_tensors = read_safetensors(shard_path);
      for (auto& [name, tensor] : shard_tensors) {
        if (!names.count(name)) fail(shard_path, "tensor '" + name + "' is not listed for this shard in the index");
        if (tensors.count(name)) fail(shard_path, "tensor '" + name + "' appears in two shards");
        tensors[name] = tensor;
        source[name] = shard_path;
      }
      for (const auto& name : names)
        if (!shard_tensors.count(name))
          fail(shard_path, "tensor '" + name + "' listed in the index is missing from this shard");
    }
  } else {
    fail(dir, "no model.safetensors or model.safetensors.index.json");
  }

  bool fresh_head = false;
  if (options.classifier_labels > 0) {
    if (config.num_labels == 0) {
      config.num_labels = options.classifier_labels;
      fresh_head = true;
    } else if (config.num_labels != options.classifier_labels) {
      fail(config_path, "a classifier with " + std::to_string(config.num_labels) + " labels, expected " +
                            std::to_string(options.classifier_labels));
    }
  }
  QwenForCausalLM model(config);
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    if (fresh_head && name == "score.weight") {
      auto generator = at::detail::createCPUGenerator(options.head_seed);
      item.value().copy_(at::normal(0.0, config.initializer_range, item.value().sizes(), generator,
                                    torch::TensorOptions().dtype(torch::kFloat32)));
      continue;
    }
    auto it = tensors.find(name);
    if (it == tensors.end())
      fail(dir, "missing tensor '" + name + "' required by config.json (" + config.model_type + ")");
    const auto& stored = it->second;
    if (stored.sizes() != item.value().sizes())
      fail(source[name], "tensor '" + name + "' has shape " + shape_string(stored.sizes()) +
                             " but config.json implies " + shape_string(item.value().sizes()));
    if (!stored.is_floating_point()) fail(source[name], "tensor '" + name + "' is not floating point");
    item.value().copy_(stored);
    used.insert(name);
  }
  for (const auto& [name, tensor] : tensors) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && (config.tie_word_embeddings || fresh_head))
      continue;  // tie copy / LM -> classifier
    fail(source[name],
         "unexpected tensor '" + name + "' (not part of a " + config.architecture() + " with this config)");
  }
  model->to(options.device, options.dtype);
  model->model->inv_freq = model->model->inv_freq.to(torch::kFloat32);
  return model;
}

c10::ScalarType parse_dtype(const std::string& name, const std::string& where) {
  if (name == "float32" || name == "f32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "f16" || name == "fp16") return torch::kFloat16;
  fail(where, "unknown dtype \"" + name + "\" (use float32, bfloat16 or float16)");
}

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      fail("--device " + name, "CUDA is not available in this build or on this machine");
    try {
      return c10::Device(name);
    } catch (const c10::Error&) {
      fail("--device", "\"" + name + "\" is not a device (use cpu, cuda or cuda:N)");
    }
  }
  fail("--device", "\"" + name + "\" is not a device (use cpu, cuda or cuda:N)");
}

std::string dtype_to_hf_name(c10::ScalarType dtype) {
  if (dtype == torch::kBFloat16) return "bfloat16";
  if (dtype == torch::kFloat16) return "float16";
  return "float32";
}

void save_model(QwenForCausalLMImpl& model, const std::string& dir, const SaveOptions& options) {
  // A full folder of an adapted model would hold the adapter tensors under names HF does not know.
  TORCH_CHECK(!has_lora(model), "save_model: the model has LoRA adapters; save_adapter, or merge_lora first");
  if (fs::exists(dir)) fail(dir, "output folder already exists; choose a new one or remove it");
  const fs::path partial = dir + ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  RemoveOnUnwind remove_partial_on_failure(partial.string());

  QwenConfig config = model.config;
  config.torch_dtype = dtype_to_hf_name(options.dtype);
  write_file_atomic((partial / "config.json").string(), qwen_config_to_json(config));
  nlohmann::ordered_json generation;
  generation["bos_token_id"] = config.bos_token_id;
  generation["eos_token_id"] = {config.eos_token_id, config.bos_token_id};  // <|im_end|>, <|endoftext|>
  generation["pad_token_id"] = config.bos_token_id;
  write_file_atomic((partial / "generation_config.json").string(), generation.dump(2) + "\n");

  // Group parameters into shards of at most max_shard_bytes (a tensor never straddles shards).
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& item : model.named_parameters()) {
    auto tensor = item.value().detach().to(options.dtype);
    const int64_t bytes = tensor.numel() * tensor.element_size();
    if (!shards.back().empty() && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(item.key(), tensor);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  if (shards.size() == 1) {
    write_safetensors((partial / "model.safetensors").string(), shards[0]);
  } else {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    nlohmann::ordered_json weight_map;
    char name[64];
    for (size_t i = 0; i < shards.size(); ++i) {
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors((partial / name).string(), shards[i]);
      for (const auto& entry : shards[i]) weight_map[entry.first] = name;
    }
    index["weight_map"] = weight_map;
    write_file_atomic((partial / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }

  if (!options.tokenizer_dir.empty()) copy_tokenizer_files(options.tokenizer_dir, partial.string());
  fs::rename(partial, dir);
}

}  // namespace posttrain
