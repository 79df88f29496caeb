#include "models/safetensors.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace posttrain {

namespace {

struct DtypeEntry {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeEntry kDtypes[] = {
    {StDtype::F64, "F64", 8}, {StDtype::F32, "F32", 4},   {StDtype::F16, "F16", 2}, {StDtype::BF16, "BF16", 2},
    {StDtype::I64, "I64", 8}, {StDtype::I32, "I32", 4},   {StDtype::I16, "I16", 2}, {StDtype::I8, "I8", 1},
    {StDtype::U8, "U8", 1},   {StDtype::BOOL, "BOOL", 1},
};

// A header larger than this is refused before allocating: the reference implementation uses 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

const char* st_dtype_name(StDtype dtype) {
  for (const auto& entry : kDtypes)
    if (entry.dtype == dtype) return entry.name;
  return "?";
}

size_t st_dtype_size(StDtype dtype) {
  for (const auto& entry : kDtypes)
    if (entry.dtype == dtype) return entry.size;
  return 0;
}

StHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& file) {
  if (size < 8)
    fail(file, "not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];  // little endian
  if (header_len > kMaxHeaderBytes)
    fail(file, "safetensors header length " + std::to_string(header_len) + " exceeds the 100 MB limit (corrupt file?)");
  if (header_len > size - 8)
    fail(file, "safetensors header length " + std::to_string(header_len) + " is larger than the file (" +
                   std::to_string(size) + " bytes): truncated or corrupt");

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(file, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(file, "safetensors header is not a JSON object");

  StHeader result;
  result.data_start = 8 + header_len;
  const uint64_t data_size = size - result.data_start;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) fail(file, "__metadata__ must be an object of strings");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) fail(file, "__metadata__." + m.key() + " must be a string");
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object()) fail(file, where + ": entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!value.contains(key)) fail(file, where + ": missing \"" + key + "\"");
    if (value.size() != 3) fail(file, where + ": unexpected keys (expected dtype, shape, data_offsets)");

    StTensorInfo info;
    info.name = name;
    const auto& dtype = value["dtype"];
    if (!dtype.is_string()) fail(file, where + ": dtype is not a string");
    bool known = false;
    for (const auto& entry : kDtypes) {
      if (dtype.get<std::string>() == entry.name) {
        info.dtype = entry.dtype;
        known = true;
      }
    }
    if (!known)
      fail(file, where + ": unsupported dtype '" + dtype.get<std::string>() +
                     "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");

    const auto& shape = value["shape"];
    if (!shape.is_array()) fail(file, where + ": shape is not an array");
    uint64_t elements = 1;
    for (const auto& dim : shape) {
      if (!dim.is_number_unsigned()) fail(file, where + ": shape has a non-integer or negative dimension");
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / 8 / d) fail(file, where + ": shape overflows");
      elements *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }

    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail(file, where + ": data_offsets must be [begin, end] with non-negative integers");
    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    if (info.end < info.begin) fail(file, where + ": data_offsets end < begin");
    if (info.end > data_size)
      fail(file, where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                     ") run past the end of the data (" + std::to_string(data_size) + " bytes): truncated file?");
    const uint64_t expected = elements * st_dtype_size(info.dtype);
    if (info.end - info.begin != expected)
      fail(file, where + ": byte range holds " + std::to_string(info.end - info.begin) + " bytes but shape x " +
                     st_dtype_name(info.dtype) + " needs " + std::to_string(expected));
    result.tensors.push_back(std::move(info));
  }

  std::sort(result.tensors.begin(), result.tensors.end(), [](const StTensorInfo& a, const StTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& info : result.tensors) {
    if (info.begin < cursor) fail(file, "tensor '" + info.name + "' overlaps the previous tensor's bytes");
    if (info.begin > cursor) fail(file, "tensor '" + info.name + "' leaves a hole before it in the data section");
    cursor = info.end;
  }
  if (cursor != data_size)
    fail(file, "data section has " + std::to_string(data_size - cursor) + " trailing bytes not covered by any tensor");
  return result;
}

std::string build_safetensors_header(std::vector<StTensorInfo>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t cursor = 0;
  for (auto& info : tensors) {
    uint64_t elements = 1;
    for (int64_t d : info.shape) elements *= static_cast<uint64_t>(d);
    info.begin = cursor;
    info.end = cursor + elements * st_dtype_size(info.dtype);
    cursor = info.end;
    header[info.name] = {
        {"dtype", st_dtype_name(info.dtype)}, {"shape", info.shape}, {"data_offsets", {info.begin, info.end}}};
  }
  std::string json = header.dump();
  while ((json.size() + 8) % 8 != 0) json += ' ';
  std::string out(8, '\0');
  uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + json;
}

}  // namespace posttrain
