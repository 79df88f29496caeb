// The fuzz input as a file: the recipe, matrix and JSONL readers take a path (they name it, with a
// line, in their messages), so each input is written to one scratch file per process first.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace fuzz {

inline std::string write_input(const uint8_t* data, size_t size, const std::string& extension) {
  static const std::string path = "/tmp/posttrain-fuzz-" + std::to_string(::getpid()) + extension;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace fuzz
