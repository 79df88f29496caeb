// libFuzzer target for the tokenizer, two modes chosen by the first input byte:
//  - encode: any bytes as text to the real Qwen3 tokenizer; valid UTF-8 must round-trip
//    decode(encode(x)) == NFC(x), invalid UTF-8 must be a UserError;
//  - parse: the bytes as a tokenizer.json; accepted or UserError, never a crash.
// POSTTRAIN_TOKENIZER_DIR names the folder holding the Qwen3 tokenizer.json.
#include <utf8proc.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "models/tokenizer.h"

namespace {

const posttrain::Tokenizer* qwen3 = nullptr;

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                        &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return "<nfc failed>";
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("POSTTRAIN_TOKENIZER_DIR");
  qwen3 = new posttrain::Tokenizer(posttrain::Tokenizer::from_dir(dir ? dir : "."));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    try {
      posttrain::Tokenizer::from_json(input, "fuzz/tokenizer.json");
    } catch (const posttrain::UserError&) {
    }
    return 0;
  }
  std::vector<int32_t> ids;
  try {
    ids = qwen3->encode(input);
  } catch (const posttrain::UserError&) {
    return 0;  // invalid UTF-8
  }
  if (qwen3->decode(ids) != nfc(input)) __builtin_trap();
  return 0;
}
